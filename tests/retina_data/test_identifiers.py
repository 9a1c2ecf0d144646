"""Ids that become paths: every reader refuses an id that could leave its folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.folds import read_folds
from retina_data.identifiers import check_id, id_problem
from retina_data.tree import eye_files

BAD_IDS = ["", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", " sub001", "sub001 ", "sub\x00001", "tab\there"]
GOOD_IDS = ["sub001", "P-17_a", "patient 3", "Ünal", "sub.004"]


@pytest.mark.parametrize("value", BAD_IDS)
def test_an_id_that_is_not_one_plain_visible_folder_name_is_refused(value: str) -> None:
    assert id_problem(value) is not None
    with pytest.raises(DataError, match=r"^subject id = "):
        check_id(value, "subject id")


@pytest.mark.parametrize("value", GOOD_IDS)
def test_ordinary_ids_pass_unchanged(value: str) -> None:
    assert check_id(value, "subject id") == value


def test_a_non_text_id_is_refused() -> None:
    assert id_problem(17) == "expected a text id, got int"


def test_an_eye_record_refuses_a_subject_that_leaves_the_tree() -> None:
    with pytest.raises(DataError, match=r"subject id = '\.\./x'"):
        Eye(oct=np.zeros((2, 2, 2), np.float32), spacing=(1.0, 1.0, 1.0), subject="../x")


def test_tree_paths_are_only_built_from_safe_ids(tmp_path: Path) -> None:
    assert eye_files(tmp_path, "sub001", "OD").oct.parent == tmp_path / "sub001" / "OD"
    with pytest.raises(DataError, match="subject id"):
        eye_files(tmp_path, "/etc", "OD")
    with pytest.raises(DataError, match="laterality"):
        eye_files(tmp_path, "sub001", "../OD")


@pytest.mark.parametrize(
    ("lists", "words"),
    [
        ("TRAIN: [sub001, '../sub002']\n    TEST: [sub003]", "FOLD.0.TRAIN subject = '../sub002'"),
        ("TRAIN: [sub001, sub001]\n    TEST: [sub003]", "FOLD.0.TRAIN lists subject(s) sub001 more than once"),
        ("TRAIN: [sub001, 7]\n    TEST: [sub003]", "FOLD.0.TRAIN subject = 7: expected a text id"),
    ],
)
def test_fold_files_with_unsafe_or_repeated_subjects_are_refused(tmp_path: Path, lists: str, words: str) -> None:
    path = tmp_path / "folds.yml"
    path.write_text(f"FOLD:\n  0:\n    {lists}\n")
    with pytest.raises(DataError) as error:
        read_folds(path)
    assert words in str(error.value)
