"""Reading a fold's eyes as the reference does: the oct_flat_subsmpl<k> files, min-max normalised, no
mirroring, OS before OD, memory-mapped on request; clear errors for missing files and unknown subjects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.eyes import read_fold_eyes
from atlas_registration.datasets.label_mapping import LabelMapping
from retina_data.errors import DataError
from retina_data.folds import write_folds
from retina_data.phantom import PhantomConfig, write_phantom
from retina_data.preprocessing import write_subsampled
from retina_data.tree import read_eye

PHANTOM = PhantomConfig(n_subjects=3, shape=(32, 8, 32), seed=5)
FOLDS = {0: {"TRAIN": ["sub002", "sub001"], "TEST": ["sub003"]}}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("atlas_tree")
    write_phantom(root, PHANTOM, progress=False)
    write_subsampled(root, [8], progress=False)
    write_folds(root / "folds.yml", FOLDS)
    return root


def test_training_eyes_come_from_the_subsmpl8_files(tree: Path) -> None:
    eyes = read_fold_eyes(tree, tree / "folds.yml", 0, LabelMapping.default(), flip_os=False, subsample=8)
    assert [eye.shape for eye in eyes.train] == [(32, 8, 4)] * 4  # 32 B-scans / 8
    stored = read_eye(tree, "sub002", "OS", subsample=8).oct
    expected = (stored - stored.min()) / (stored.max() - stored.min())
    np.testing.assert_allclose(eyes.train[0].oct, expected, rtol=1e-6)
    assert eyes.train[0].oct.min() == 0.0 and eyes.train[0].oct.max() == 1.0
    assert [eye.shape for eye in eyes.test] == [(32, 8, 32)] * 2  # test eyes dense


def test_eyes_come_in_file_order_os_before_od_and_are_not_mirrored(tree: Path) -> None:
    assert AtlasConfig().DATA.FLIP_OS is False
    eyes = read_fold_eyes(tree, tree / "folds.yml", 0, LabelMapping.default(), flip_os=False, subsample=8)
    assert [eye.eye_id for eye in eyes.train] == ["sub002_OS", "sub002_OD", "sub001_OS", "sub001_OD"]
    stored = read_eye(tree, "sub002", "OS", subsample=8).labels
    np.testing.assert_array_equal(eyes.train[0].labels, LabelMapping.default().apply(stored))


def test_memory_mapped_eyes_hold_the_same_values(tree: Path, tmp_path: Path) -> None:
    mapping = LabelMapping.default()
    in_memory = read_fold_eyes(tree, tree / "folds.yml", 0, mapping, flip_os=True, subsample=8)
    mapped = read_fold_eyes(tree, tree / "folds.yml", 0, mapping, flip_os=True, subsample=8, cache_dir=tmp_path)
    for a, b in zip(in_memory.train + in_memory.test, mapped.train + mapped.test):
        assert isinstance(b.oct.base, np.memmap) or isinstance(b.oct, np.memmap)
        np.testing.assert_array_equal(a.oct, b.oct)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_a_missing_subsampled_file_names_it_and_the_command(tree: Path) -> None:
    with pytest.raises(DataError, match=r"oct_flat_subsmpl16_os.nii.gz: not found.*python -m retina_data subsample"):
        read_fold_eyes(tree, tree / "folds.yml", 0, LabelMapping.default(), flip_os=False, subsample=16)


def test_a_fold_file_naming_absent_subjects_is_refused(tree: Path, tmp_path: Path) -> None:
    write_folds(tmp_path / "folds.yml", {0: {"TRAIN": ["sub001", "sub099"], "TEST": ["sub003"]}})
    with pytest.raises(DataError, match=r"FOLD.0.TRAIN names subject\(s\) not found .*sub099"):
        read_fold_eyes(tree, tmp_path / "folds.yml", 0, LabelMapping.default(), flip_os=False)


def test_the_shipped_fold_file_is_the_papers_split() -> None:
    from retina_data.folds import read_folds

    folds = read_folds(Path(__file__).parents[2] / AtlasConfig().SETTINGS.FOLD_FILE)
    subjects = {s for split in folds.values() for s in split["TRAIN"] + split["TEST"]}
    assert sorted(folds) == [0, 1, 2, 3, 4] and len(subjects) == 50 and "sub027" not in subjects
    assert all((len(split["TRAIN"]), len(split["TEST"])) == (40, 10) for split in folds.values())
    assert AtlasConfig().SETTINGS.FOLD == 2
