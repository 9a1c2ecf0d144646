"""The NIfTI tree: eyes written and read back unchanged, headers readable by other tools."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import SimpleITK as sitk
from eye_builders import SPACING, build_eye

from retina_data.errors import DataError, OutputExistsError
from retina_data.nifti import sidecar_path
from retina_data.tree import eye_files, list_eyes, read_dataset, read_eye, write_eye


def test_tree_round_trip_keeps_every_array_and_the_geometry(tmp_path):
    eye = build_eye("sub007", "OS")
    write_eye(tmp_path, eye)
    back = read_eye(tmp_path, "sub007", "OS")
    assert back.eye_id == "sub007_OS"
    assert back.oct.dtype == np.float32 and np.array_equal(back.oct, eye.oct)
    assert back.labels.dtype == np.uint8 and np.array_equal(back.labels, eye.labels)
    assert np.array_equal(back.slo, eye.slo)
    assert back.spacing == SPACING
    assert np.array_equal(back.bscan_positions, eye.bscan_positions)
    assert np.array_equal(back.slo_positions, eye.slo_positions)


def test_simpleitk_reads_our_volume_with_reversed_array_axes_and_the_spacing(tmp_path):
    eye = build_eye(shape=(40, 12, 8))
    write_eye(tmp_path, eye)
    image = sitk.ReadImage(str(eye_files(tmp_path, "sub001", "OD").oct))
    assert image.GetSize() == (40, 12, 8)
    assert image.GetSpacing() == pytest.approx(SPACING, rel=1e-6)
    array = sitk.GetArrayFromImage(image)
    assert array.shape == (8, 12, 40)
    assert np.array_equal(array, eye.oct.transpose(2, 1, 0))


def test_simpleitk_reads_labels_as_uint8_and_the_slo_as_2d_image(tmp_path):
    eye = build_eye()
    write_eye(tmp_path, eye)
    files = eye_files(tmp_path, "sub001", "OD")
    labels = sitk.ReadImage(str(files.labels))
    assert labels.GetPixelID() == sitk.sitkUInt8
    assert np.array_equal(sitk.GetArrayFromImage(labels), eye.labels.transpose(2, 1, 0))
    slo = sitk.ReadImage(str(files.slo))
    assert slo.GetDimension() == 2 and slo.GetSize() == (12, 8)
    assert slo.GetSpacing() == pytest.approx((SPACING[1], SPACING[2]), rel=1e-6)


def test_header_spacing_is_used_when_the_sidecar_is_missing(tmp_path):
    write_eye(tmp_path, build_eye())
    oct_path = eye_files(tmp_path, "sub001", "OD").oct
    sidecar_path(oct_path).unlink()
    back = read_eye(tmp_path, "sub001", "OD")
    assert back.spacing == pytest.approx(SPACING, rel=1e-6)
    assert back.bscan_positions == pytest.approx(np.arange(8) * SPACING[2], rel=1e-6)


def test_subsampled_files_keep_positions_and_the_dense_slo(tmp_path):
    eye = build_eye()
    write_eye(tmp_path, eye)
    write_eye(tmp_path, eye.subsample(3), subsample=3)
    sparse = read_eye(tmp_path, "sub001", "OD", subsample=3)
    assert sparse.shape == (40, 12, 3)
    assert np.array_equal(sparse.bscan_positions, eye.bscan_positions[::3])
    assert np.array_equal(sparse.oct, eye.oct[:, :, ::3])
    assert np.array_equal(sparse.labels, eye.labels[:, :, ::3])
    assert sparse.slo.shape == (12, 8)
    assert np.array_equal(sparse.slo_positions, eye.bscan_positions)


def test_non_uniform_bscan_positions_survive_the_round_trip(tmp_path):
    positions = np.array([0.0, 0.05, 0.3, 0.31, 0.7, 1.0, 1.2, 2.5])
    eye = build_eye(positions=positions)
    write_eye(tmp_path, eye)
    back = read_eye(tmp_path, "sub001", "OD")
    assert np.array_equal(back.bscan_positions, positions)
    assert np.array_equal(back.slo_positions, positions)


def test_eye_without_labels_or_slo_reads_back_without_them(tmp_path):
    write_eye(tmp_path, build_eye(labels=False, slo=False))
    back = read_eye(tmp_path, "sub001", "OD")
    assert back.labels is None and back.slo is None


def test_write_refuses_existing_files_and_changes_nothing(tmp_path):
    eye = build_eye()
    written = write_eye(tmp_path, eye)
    before = {p: p.read_bytes() for p in written}
    other = build_eye(seed=5)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_eye(tmp_path, other)
    assert all(p.read_bytes() == data for p, data in before.items())
    write_eye(tmp_path, other, overwrite=True)
    assert np.array_equal(read_eye(tmp_path, "sub001", "OD").oct, other.oct)


def test_read_dataset_returns_eyes_in_subject_order(make_tree):
    data_dir = make_tree(3)
    assert list_eyes(data_dir)[:2] == [("sub001", "OD"), ("sub001", "OS")]
    eyes = read_dataset(data_dir, subjects=["sub003", "sub001"])
    assert [e.eye_id for e in eyes] == ["sub003_OD", "sub003_OS", "sub001_OD", "sub001_OS"]


def test_written_files_get_the_usual_permissions_not_those_of_a_temporary_file(tmp_path):
    umask = os.umask(0o022)
    try:
        paths = write_eye(tmp_path, build_eye())
    finally:
        os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in paths} == {0o644}


# --- damaged NIfTI files and sidecars: the one-line error instead of a traceback ---------------


def _one_volume(tmp_path):
    from retina_data.nifti import write_nifti

    path = tmp_path / "v.nii.gz"
    write_nifti(path, np.zeros((4, 3, 2), np.float32), (0.1, 0.2, 0.3), positions=np.array([0.0, 0.3]))
    return path


@pytest.mark.parametrize(
    ("sidecar", "words"),
    [
        ("[1, 2]", "expected a JSON object"),
        ('{"positions_mm": "abc"}', "positions_mm must be a list of finite numbers"),
        ('{"spacing_mm": [0.1, "x", 0.3]}', "spacing_mm must be a list of finite numbers"),
        ('{"meta": 5}', "meta must be a JSON object"),
        ('{"positions_mm": [0.0, 0.1, 0.2]}', "3 positions for 2 slices"),
    ],
)
def test_a_malformed_sidecar_is_named_with_what_was_expected(tmp_path, sidecar, words):
    from retina_data.nifti import read_nifti

    path = _one_volume(tmp_path)
    (tmp_path / "v.json").write_text(sidecar)
    with pytest.raises(DataError, match=re.escape(words)) as error:
        read_nifti(path)
    assert "v.json" in str(error.value)


def test_a_header_declaring_more_data_than_the_file_holds_is_refused_before_reading(tmp_path):
    import gzip
    import struct

    from retina_data.nifti import read_nifti

    path = _one_volume(tmp_path)
    header = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<8h", header, 40, 3, 4000, 3000, 2000, 1, 1, 1, 1)  # dim[]: 96 GB declared
    path.write_bytes(gzip.compress(bytes(header)))
    with pytest.raises(DataError, match=r"v.nii.gz: header declares shape \(4000, 3000, 2000\)"):
        read_nifti(path)


def test_an_rgb_nifti_is_refused_as_one_value_per_voxel_expected(tmp_path):
    import nibabel as nib

    from retina_data.nifti import read_nifti

    rgb = np.zeros((4, 3, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(tmp_path / "rgb.nii.gz"))
    with pytest.raises(DataError, match="expected one grey value per voxel"):
        read_nifti(tmp_path / "rgb.nii.gz")


def test_a_fractional_label_is_reported_as_such_not_as_an_in_range_span(tmp_path):
    eye = build_eye()
    write_eye(tmp_path, eye)
    from retina_data.nifti import write_nifti

    labels = eye.labels.astype(np.float32)
    labels[0, 0, 0] = 2.5
    write_nifti(eye_files(tmp_path, eye.subject, eye.laterality).labels, labels, eye.spacing, overwrite=True)
    with pytest.raises(DataError, match=r"not whole numbers \(e\.g\. 2\.5\)"):
        read_eye(tmp_path, eye.subject, eye.laterality)
