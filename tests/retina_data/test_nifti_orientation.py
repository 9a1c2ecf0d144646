"""NIfTI files carry a real anatomical orientation that viewers and toolkits read alike.

Our volumes ``[H, W, D]`` are (posterior, patient's left, inferior): nibabel's axis codes
are ``('P', 'L', 'I')`` (en-face images ``('L', 'P')``), SimpleITK's direction (LPS) has the columns (0, 1, 0), (1, 0, 0),
(0, 0, -1). A foreign file in another axis-aligned orientation is reoriented to our axes; an
unoriented one (positive diagonal affine, as our files before and the reference tree) is
read in array order; an oblique one is refused.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from retina_data.errors import DataError
from retina_data.nifti import REORIENTED, read_nifti, sidecar_path, write_nifti

SPACING = (0.004, 0.012, 0.12)
VOLUME = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
"""Every voxel distinct, so any wrong transpose or flip shows."""


def _foreign(path, array, columns, translation=(0.0, 0.0, 0.0)):
    """Write ``array`` with an affine whose columns (RAS) are ``columns``, as another tool would."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(columns, dtype=float).T
    affine[:3, 3] = translation
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def test_a_volume_we_write_has_the_documented_axis_codes_in_qform_and_sform(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", VOLUME, SPACING)
    image = nib.load(str(path))
    assert nib.aff2axcodes(image.get_qform()) == ("P", "L", "I")
    assert nib.aff2axcodes(image.get_sform()) == ("P", "L", "I")
    assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1


def test_simpleitk_reads_our_direction_spacing_and_slow_axis_origin(tmp_path):
    path = write_nifti(tmp_path / "v.nii.gz", VOLUME, SPACING, positions=1.5 + np.arange(6) * SPACING[2])
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (4, 5, 6)
    assert np.allclose(np.reshape(image.GetDirection(), (3, 3)), [[0, 1, 0], [1, 0, 0], [0, 0, -1]])
    assert image.GetSpacing() == pytest.approx(SPACING)
    assert image.GetOrigin() == pytest.approx((0.0, 0.0, -1.5))  # B-scan 0 lies 1.5 mm along the slow axis
    assert np.array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), VOLUME)


def test_an_en_face_image_lies_in_itks_plane_with_the_first_bscan_at_the_top(tmp_path):
    path = write_nifti(tmp_path / "slo.nii.gz", VOLUME[0], SPACING[1:])
    assert nib.aff2axcodes(nib.load(str(path)).affine)[:2] == ("L", "P")
    image = sitk.ReadImage(str(path))
    assert image.GetDimension() == 2 and np.allclose(np.reshape(image.GetDirection(), (2, 2)), np.eye(2))
    back = read_nifti(path)
    assert np.array_equal(back.array, VOLUME[0]) and back.spacing == pytest.approx(SPACING[1:])


def test_our_file_reads_back_exactly_with_positions_from_the_header_alone(tmp_path):
    positions = 2.0 + np.arange(6) * SPACING[2]
    path = write_nifti(tmp_path / "v.nii.gz", VOLUME, SPACING, positions=positions)
    sidecar_path(path).unlink()
    back = read_nifti(path)
    assert np.array_equal(back.array, VOLUME) and REORIENTED not in back.meta
    assert back.positions == pytest.approx(positions, abs=1e-5)


@pytest.mark.parametrize(
    ("array", "columns", "codes"),
    [
        # [W, H, D] as the reference's loader sees nibabel's arrays, oriented L, P, I
        (VOLUME.transpose(1, 0, 2), [(-SPACING[1], 0, 0), (0, -SPACING[0], 0), (0, 0, -SPACING[2])], "LPI"),
        # depth stored from the choroid up (anterior), fast axis to the right
        (VOLUME[::-1, ::-1], [(0, SPACING[0], 0), (SPACING[1], 0, 0), (0, 0, -SPACING[2])], "ARI"),
        # [D, W, H], RAS-style: superior, left, anterior
        (
            VOLUME.transpose(2, 1, 0)[::-1, :, ::-1],
            [(0, 0, SPACING[2]), (-SPACING[1], 0, 0), (0, SPACING[0], 0)],
            "SLA",
        ),
    ],
)
def test_a_file_in_another_orientation_is_reoriented_to_our_axes(tmp_path, array, columns, codes):
    path = _foreign(tmp_path / "foreign.nii.gz", np.ascontiguousarray(array), columns)
    back = read_nifti(path)
    assert back.meta[REORIENTED] == codes
    assert np.array_equal(back.array, VOLUME)
    assert back.spacing == pytest.approx(SPACING)


def test_reorienting_keeps_the_slow_axis_positions(tmp_path):
    columns = [(0, 0, SPACING[2]), (-SPACING[1], 0, 0), (0, SPACING[0], 0)]  # D stored superior-wards
    array = VOLUME.transpose(2, 1, 0)[::-1, :, ::-1]
    # voxel 0 of the stored D axis is our last B-scan; put our first B-scan at 3 mm (z = -3)
    path = _foreign(tmp_path / "f.nii.gz", np.ascontiguousarray(array), columns, (0, 0, -3.0 - 5 * SPACING[2]))
    assert read_nifti(path).positions == pytest.approx(3.0 + np.arange(6) * SPACING[2])


def test_an_unoriented_file_is_read_in_its_array_order(tmp_path):
    path = _foreign(tmp_path / "plain.nii.gz", VOLUME, np.diag(SPACING))
    back = read_nifti(path)
    assert np.array_equal(back.array, VOLUME) and REORIENTED not in back.meta


def test_an_oblique_file_is_refused(tmp_path):
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    path = _foreign(tmp_path / "oblique.nii.gz", VOLUME, (rotation @ np.diag(SPACING)).T)
    with pytest.raises(DataError, match=r"oblique.nii.gz: oblique orientation"):
        read_nifti(path)
