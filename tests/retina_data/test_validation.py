"""``validate``: every fault found, each named with its file and what was expected."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from eye_builders import build_eye
from faults import rewrite_array, set_header_zoom, truncate

from retina_data.containers import write_container
from retina_data.labels import label_names
from retina_data.tree import eye_files, write_dataset_info, write_eye
from retina_data.validation import Problem, validate


def _only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def test_a_clean_tree_has_no_problems(make_tree):
    data_dir = make_tree(2)
    write_eye(data_dir, build_eye("sub001", "OD").subsample(2), subsample=2)
    assert validate(data_dir) == []


def test_nan_in_the_oct_is_reported_with_its_file(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OD").oct
    rewrite_array(path, lambda a: np.where(np.arange(a.size).reshape(a.shape) < 3, np.nan, a).astype(np.float32))
    problem = _only(validate(data_dir))
    assert problem.path == path and "3 NaN" in problem.message and "finite" in problem.message


def test_labels_outside_the_declared_classes_are_reported(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OS").labels
    rewrite_array(path, lambda a: np.where(a == 5, 20, a).astype(np.uint8))
    problem = _only(validate(data_dir))
    assert problem.path == path and "20" in problem.message and "0..12" in problem.message


def test_label_range_follows_the_label_names_of_dataset_yaml(make_tree):
    data_dir = make_tree(1)
    rewrite_array(eye_files(data_dir, "sub001", "OD").labels, lambda a: np.where(a == 5, 13, a).astype(np.uint8))
    assert "13" in _only(validate(data_dir)).message
    write_dataset_info(data_dir, "with fluid", with_fluid=True, overwrite=True)
    assert len(label_names(with_fluid=True)) == 14
    assert validate(data_dir) == []


def test_truncated_nifti_is_reported_as_corrupt(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OD").labels
    truncate(path)
    problem = _only(validate(data_dir))
    assert problem.path == path and "truncated or corrupt" in problem.message


def test_missing_oct_is_reported_with_the_expected_name(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OS").oct
    path.unlink()
    problem = _only(validate(data_dir))
    assert problem.path == path and "missing OCT volume" in problem.message and "oct_flat_os.nii.gz" in problem.message


def test_label_shape_mismatch_names_both_shapes(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OD").labels
    rewrite_array(path, lambda a: np.ascontiguousarray(a[:30]))
    problem = _only(validate(data_dir))
    assert problem.path == path and "(30, 12, 8)" in problem.message and "(40, 12, 8)" in problem.message


def test_slo_width_mismatch_is_reported(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OD").slo
    rewrite_array(path, lambda a: np.ascontiguousarray(a[:10]))
    problem = _only(validate(data_dir))
    assert problem.path == path and "W=12" in problem.message


def test_wrong_dtype_names_the_expected_one(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OD").oct
    rewrite_array(path, lambda a: a.astype(np.float64))
    problem = _only(validate(data_dir))
    assert problem.path == path and "float64" in problem.message and "expected float32" in problem.message


def test_oct_stored_as_0_255_is_reported_with_the_two_remedies(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OD").oct
    rewrite_array(path, lambda a: (a * 255).astype(np.float32))
    problem = _only(validate(data_dir))
    assert problem.path == path and "expected flattened OCT in [0, 1]" in problem.message
    assert "re-import" in problem.message and "PREPROCESSING.MINMAX_NORMALISE" in problem.message


def test_a_four_dimensional_volume_beside_its_sidecar_is_reported_as_not_3d(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OD").oct
    rewrite_array(path, lambda a: np.stack([a, a], axis=-1))
    problem = _only(validate(data_dir))
    assert problem.path == path and "expected 3-D [H, W, D]" in problem.message


def test_zero_spacing_in_the_header_is_reported(make_tree):
    data_dir = make_tree(1)
    path = eye_files(data_dir, "sub001", "OS").oct
    set_header_zoom(path, 2, 0.0)
    messages = [p.message for p in validate(data_dir) if p.path == path]
    assert any("spacing" in m and "0.0" in m and "positive" in m for m in messages)


def test_subjects_differing_only_in_letter_case_are_duplicates(make_tree):
    data_dir = make_tree(1)
    shutil.copytree(data_dir / "sub001", data_dir / "SUB001")
    problem = _only(validate(data_dir))
    assert problem.path.name in ("sub001", "SUB001") and "duplicates" in problem.message


def test_an_empty_data_set_is_a_problem(tmp_path):
    (tmp_path / "data").mkdir()
    assert "empty data set" in _only(validate(tmp_path / "data")).message


def test_subsampled_volume_off_the_dense_positions_is_reported(make_tree):
    data_dir = make_tree(1)
    eye = build_eye("sub001", "OD")
    shifted = build_eye("sub001", "OD", shape=(40, 12, 4), positions=eye.bscan_positions[::2] + 0.05)
    write_eye(data_dir, shifted, subsample=2)
    problem = _only(validate(data_dir))
    assert "oct_flat_subsmpl2_od" in problem.path.name and "not positions of the dense volume" in problem.message


def test_a_single_eye_folder_and_a_single_file_can_be_validated(make_tree):
    data_dir = make_tree(1)
    assert validate(data_dir / "sub001" / "OD") == []
    path = eye_files(data_dir, "sub001", "OD").labels
    rewrite_array(path, lambda a: np.where(a == 1, 99, a).astype(np.uint8))
    assert "99" in _only(validate(path)).message
    assert "99" in _only(validate(data_dir / "sub001" / "OD")).message


def test_a_clean_container_has_no_problems(tmp_path):
    path = write_container(tmp_path / "c.npz", [build_eye("a", "OD"), build_eye("a", "OS")])
    assert validate(path) == []


def test_container_faults_are_all_reported(tmp_path):
    rng = np.random.default_rng(0)
    oct_vols = rng.random((2, 10, 4, 3), dtype=np.float32)
    oct_vols[1, 0, 0, 0] = np.inf
    path = tmp_path / "bad.npz"
    np.savez(
        path,
        oct_vols=oct_vols,
        seg_vols=np.full((2, 10, 4, 3), 14, dtype=np.uint8),
        subject_names=np.array(["sub1_OD", "SUB1_od"]),
        spacing_oct=np.array([0.004, -0.01, 0.1]),
    )
    messages = " | ".join(p.message for p in validate(path))
    for expected in ("1 Inf", "label value(s) 14", "duplicate subject id", "spacing_oct", "positive"):
        assert expected in messages


def test_truncated_container_is_reported_as_corrupt(tmp_path):
    path = write_container(tmp_path / "c.npz", [build_eye()])
    truncate(path, 0.6)
    assert "truncated or corrupt" in _only(validate(path)).message


@pytest.mark.parametrize("missing", ["oct_vols", "subject_names", "spacing_oct"])
def test_container_without_a_required_key_names_it(tmp_path, missing):
    arrays = {
        "oct_vols": np.zeros((1, 4, 3, 2), np.float32),
        "subject_names": np.array(["s_OD"]),
        "spacing_oct": np.array([0.1, 0.1, 0.1]),
    }
    del arrays[missing]
    np.savez(tmp_path / "c.npz", **arrays)
    assert f"missing key {missing!r}" in _only(validate(tmp_path / "c.npz")).message
