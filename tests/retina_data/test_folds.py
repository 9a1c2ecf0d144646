"""Subject-level folds and the export of fold containers."""

from __future__ import annotations

import numpy as np
import pytest

from retina_data.containers import read_container
from retina_data.errors import DataError, OutputExistsError
from retina_data.export import export_containers
from retina_data.folds import make_folds, read_folds, write_folds, write_folds_for_tree
from retina_data.tree import read_eye

SUBJECTS = [f"sub{i:03d}" for i in range(1, 12)]


def test_every_subject_is_tested_exactly_once_and_trained_elsewhere():
    folds = make_folds(SUBJECTS, 5, seed=3)
    tested = sorted(s for split in folds.values() for s in split["TEST"])
    assert tested == SUBJECTS
    for split in folds.values():
        assert sorted(split["TRAIN"] + split["TEST"]) == SUBJECTS
    assert sorted(len(split["TEST"]) for split in folds.values()) == [2, 2, 2, 2, 3]


def test_folds_are_seeded():
    assert make_folds(SUBJECTS, 4, seed=1) == make_folds(SUBJECTS, 4, seed=1)
    assert make_folds(SUBJECTS, 4, seed=1) != make_folds(SUBJECTS, 4, seed=2)


def test_too_few_subjects_for_k_folds_is_a_data_error():
    with pytest.raises(DataError, match="3 subject"):
        make_folds(SUBJECTS[:3], 5)


def test_folds_file_has_the_reference_layout_and_reads_back(tmp_path):
    folds = make_folds(SUBJECTS, 3)
    path = write_folds(tmp_path / "cross-validation-folds.yml", folds)
    text = path.read_text()
    assert text.startswith("FOLD:\n") and "TRAIN:" in text and "TEST:" in text
    assert read_folds(path) == folds


def test_both_eyes_of_a_subject_go_to_the_same_fold(make_tree, tmp_path):
    data_dir = make_tree(4)
    path = write_folds_for_tree(data_dir, tmp_path / "folds.yml", k=2, seed=0)
    export_containers(data_dir, path, 1, 1, tmp_path / "npz", progress=False)
    test_ids = [e.eye_id for e in read_container(tmp_path / "npz" / "dataset_flat_subsmpl1_test_fold1.npz")]
    train_ids = [e.eye_id for e in read_container(tmp_path / "npz" / "dataset_flat_subsmpl1_train_fold1.npz")]
    for subject in read_folds(path)[1]["TEST"]:
        assert {f"{subject}_OD", f"{subject}_OS"} <= set(test_ids)
        assert not {f"{subject}_OD", f"{subject}_OS"} & set(train_ids)


def test_subject_in_folds_but_not_on_disk_is_named(make_tree, tmp_path):
    data_dir = make_tree(2)
    path = write_folds(tmp_path / "folds.yml", {0: {"TRAIN": ["sub001"], "TEST": ["sub009"]}})
    with pytest.raises(DataError, match=r"FOLD.0.TEST.*sub009"):
        read_folds(path, data_dir)


def test_missing_fold_index_lists_the_folds_present(make_tree, tmp_path):
    data_dir = make_tree(2)
    path = write_folds(tmp_path / "folds.yml", make_folds(["sub001", "sub002"], 2))
    with pytest.raises(DataError, match=r"no fold 7.*\[0, 1\]"):
        export_containers(data_dir, path, 7, 2, tmp_path / "out", progress=False)


def test_malformed_folds_file_is_a_data_error(tmp_path):
    path = tmp_path / "folds.yml"
    path.write_text("FOLD:\n  0: {TRAIN: [a], TESTS: [b]}\n")
    with pytest.raises(DataError, match=r"FOLD.0 must hold exactly TRAIN and TEST"):
        read_folds(path)


def test_exported_containers_hold_every_kth_bscan_and_the_dense_slo(make_tree, tmp_path):
    data_dir = make_tree(2)
    path = write_folds(tmp_path / "folds.yml", {0: {"TRAIN": ["sub002"], "TEST": ["sub001"]}})
    train, test = export_containers(data_dir, path, 0, 4, tmp_path / "npz", progress=False)
    assert train.name == "dataset_flat_subsmpl4_train_fold0.npz"
    assert test.name == "dataset_flat_subsmpl4_test_fold0.npz"
    with np.load(test) as data:
        assert data["oct_vols"].shape == (2, 40, 12, 2)
        assert data["enface_imgs"].shape == (2, 12, 8)
        assert data["subject_names"].tolist() == ["sub001_OD", "sub001_OS"]
        dense = read_eye(data_dir, "sub001", "OS")
        assert np.array_equal(data["oct_vols"][1], dense.oct[:, :, ::4])
        assert np.array_equal(data["seg_vols"][1], dense.labels[:, :, ::4])
    with pytest.raises(OutputExistsError):
        export_containers(data_dir, path, 0, 4, tmp_path / "npz", progress=False)


def test_subject_in_both_train_and_test_of_a_fold_is_a_data_error(tmp_path):
    path = write_folds(tmp_path / "folds.yml", {0: {"TRAIN": ["a", "b"], "TEST": ["b"]}})
    with pytest.raises(DataError, match=r"FOLD.0: subject.*b in both TRAIN and TEST"):
        read_folds(path)
