"""Reference fold containers: read and written exactly."""

from __future__ import annotations

import numpy as np
import pytest
from eye_builders import build_eye

from retina_data.containers import read_container, write_container
from retina_data.errors import DataError


def _arrays(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _assert_identical(first, second):
    a, b = _arrays(first), _arrays(second)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert a[key].shape == b[key].shape, key
        assert a[key].tobytes() == b[key].tobytes(), key


def test_container_written_from_read_eyes_is_identical(tmp_path):
    eyes = [build_eye("sub001", "OD", seed=1), build_eye("sub001", "OS", seed=2), build_eye("sub010", "OD", seed=3)]
    first = write_container(tmp_path / "a.npz", eyes)
    second = write_container(tmp_path / "b.npz", read_container(first))
    _assert_identical(first, second)
    assert set(_arrays(first)) == {"oct_vols", "seg_vols", "enface_imgs", "subject_names", "spacing_oct"}


def test_foreign_container_dtypes_and_names_are_kept_exactly(tmp_path):
    rng = np.random.default_rng(0)
    original = tmp_path / "dataset_flat_subsmpl4_train_fold0.npz"
    np.savez_compressed(
        original,
        oct_vols=rng.random((2, 20, 6, 3), dtype=np.float32),
        seg_vols=rng.integers(0, 13, (2, 20, 6, 3), dtype=np.uint8),
        enface_imgs=rng.random((2, 6, 12), dtype=np.float32),
        subject_names=np.array(["patient_1_OD", "patient_1_OS"], dtype="<U32"),
        spacing_oct=np.array([0.0039, 0.0117, 0.47], dtype=np.float32),
    )
    copy = write_container(tmp_path / "copy.npz", read_container(original))
    _assert_identical(original, copy)


def test_container_eyes_carry_subject_laterality_and_a_dense_slo(tmp_path):
    eye = build_eye("sub002", "OS").subsample(4)
    path = write_container(tmp_path / "c.npz", [eye])
    (back,) = read_container(path)
    assert (back.subject, back.laterality) == ("sub002", "OS")
    assert back.shape == (40, 12, 2) and back.slo.shape == (12, 8)
    assert np.array_equal(back.oct, eye.oct) and np.array_equal(back.labels, eye.labels)
    assert back.spacing == eye.spacing


def _reference_container(path, *, width=6, bscans=3, enface_bscans=None, seg_dtype=np.float64):
    """A container as the reference code writes it: enface_imgs [N, D, W], float seg_vols."""
    rng = np.random.default_rng(1)
    enface_bscans = enface_bscans or bscans
    arrays = {
        "oct_vols": rng.random((2, 10, width, bscans), dtype=np.float32),
        "seg_vols": rng.integers(0, 13, (2, 10, width, bscans)).astype(seg_dtype),
        "enface_imgs": rng.random((2, enface_bscans, width), dtype=np.float32),
        "subject_names": np.array(["sub001_OD", "sub002_OS"]),
        "spacing_oct": np.array([0.0039, 0.0117, 0.2]),
    }
    np.savez_compressed(path, **arrays)
    return arrays


def test_reference_container_with_enface_ndw_and_float_labels_is_read_as_our_layout(tmp_path):
    path = tmp_path / "dataset_flat_subsmpl32_train_fold1.npz"
    arrays = _reference_container(path)
    eyes = read_container(path)
    assert eyes[1].slo.shape == (6, 3)
    assert np.array_equal(eyes[1].slo, arrays["enface_imgs"][1].T)
    assert eyes[0].labels.dtype == np.uint8 and np.array_equal(eyes[0].labels, arrays["seg_vols"][0])
    copy = write_container(tmp_path / "copy.npz", eyes)
    _assert_identical(path, copy)


def test_square_enface_layout_is_refused_unless_stated(tmp_path):
    path = tmp_path / "square.npz"
    arrays = _reference_container(path, width=4, bscans=4)
    with pytest.raises(DataError, match="ENFACE_LAYOUT"):
        read_container(path)
    as_ndw = read_container(path, enface_layout="NDW")
    as_nwd = read_container(path, enface_layout="NWD")
    assert np.array_equal(as_ndw[0].slo, arrays["enface_imgs"][0].T)
    assert np.array_equal(as_nwd[0].slo, arrays["enface_imgs"][0])


def test_stated_enface_layout_that_does_not_fit_is_refused(tmp_path):
    path = tmp_path / "ndw.npz"
    _reference_container(path, width=6, bscans=3)
    with pytest.raises(DataError, match="is not NWD"):
        read_container(path, enface_layout="NWD")


def test_float_labels_with_fractions_are_refused(tmp_path):
    path = tmp_path / "fractional.npz"
    arrays = _reference_container(path)
    arrays["seg_vols"][0, 0, 0, 0] = 2.5
    np.savez_compressed(path, **arrays)
    with pytest.raises(DataError, match="expected integers"):
        read_container(path)
