"""Reference fold containers: read and written exactly."""

from __future__ import annotations

import numpy as np
from eye_builders import build_eye

from retina_data.containers import read_container, write_container


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
