"""The atlas trained from an eye store (SETTINGS.DATA_DIR a ``.zarr``): the same eyes, patches, weights and
results as from the tree it was written from, with no eye's voxels held by the training data."""

from __future__ import annotations

import csv
import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from test_atlas_pipeline import CONFIG, TINY

from atlas_registration import GINR_Atlas_base
from atlas_registration.datasets.coordinates import grid_extent
from atlas_registration.datasets.eyes import read_fold_eyes
from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.datasets.patches import FullEyeDataset, StridedPatchDataset
from atlas_registration.datasets.store_eyes import StoredEye, read_store_fold_eyes
from atlas_registration.median_atlas import median_atlas
from retina_data.checkpoints import load_checkpoint
from retina_data.errors import ConfigError, DataError
from retina_data.eye_store import write_store
from retina_data.folds import write_folds
from retina_data.phantom import PhantomConfig, write_phantom
from retina_data.preprocessing import write_subsampled
from retina_data.tree import list_eyes, read_eye

FOLDS = {0: {"TRAIN": ["sub002", "sub001"], "TEST": ["sub003"]}}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A phantom tree of 3 subjects (32 B-scans, with its subsmpl8 files), the store written from its
    dense eyes, and a fold file."""
    root = tmp_path_factory.mktemp("atlas_store")
    tree, store = root / "tree", root / "eyes.zarr"
    write_phantom(tree, PhantomConfig(n_subjects=3, shape=(32, 8, 32), seed=5), progress=False)
    write_subsampled(tree, [8], progress=False)
    write_store(store, (read_eye(tree, subject, lat) for subject, lat in list_eyes(tree)), progress=False)
    write_folds(root / "folds.yml", FOLDS)
    return tree, store, root / "folds.yml"


def _both(data, subsample: int = 8, flip_os: bool = True):
    tree, store, folds = data
    mapping = LabelMapping.default()
    return (
        read_fold_eyes(tree, folds, 0, mapping, flip_os, subsample),
        read_store_fold_eyes(store, folds, 0, mapping, flip_os, subsample),
    )


def test_store_eyes_are_the_trees_prepared_eyes(data) -> None:
    """Every k-th stored B-scan normalised by the range of those B-scans, mapped and mirrored: what the
    tree's oct_flat_subsmpl8 files give; the test eyes dense."""
    from_tree, from_store = _both(data)
    assert [eye.eye_id for eye in from_store.train] == ["sub002_OS", "sub002_OD", "sub001_OS", "sub001_OD"]
    assert all(isinstance(eye, StoredEye) for eye in from_store.train)
    for tree_eye, stored in zip(from_tree.train, from_store.train):
        assert stored.shape == tree_eye.shape == (32, 8, 4)
        assert stored.spacing == pytest.approx(tree_eye.spacing, rel=1e-6)
        np.testing.assert_array_equal(stored.bscan_positions, tree_eye.bscan_positions)
        eye = stored.read()
        np.testing.assert_array_equal(eye.oct, tree_eye.oct)
        np.testing.assert_array_equal(eye.labels, tree_eye.labels)
    for tree_eye, eye in zip(from_tree.test, from_store.test):
        assert eye.shape == (32, 8, 32)
        np.testing.assert_array_equal(eye.oct, tree_eye.oct)
        np.testing.assert_array_equal(eye.labels, tree_eye.labels)


def test_a_part_of_a_stored_eye_is_normalised_by_the_whole_eye(data) -> None:
    """B-scans 1 and 3 alone have another min and max than the eye; they read as in the whole eye."""
    _, from_store = _both(data)
    stored = from_store.train[0]
    whole, part = stored.read(), stored.read([1, 3])
    np.testing.assert_array_equal(part.oct, whole.oct[:, :, [1, 3]])
    np.testing.assert_array_equal(part.labels, whole.labels[:, :, [1, 3]])
    np.testing.assert_array_equal(part.bscan_positions, whole.bscan_positions[[1, 3]])
    assert whole.oct.min() == 0.0 and whole.oct.max() == 1.0


@pytest.mark.parametrize("mode", ["downsample", "crop"])
def test_patches_from_the_store_are_the_patches_from_the_tree(data, mode: str) -> None:
    from_tree, from_store = _both(data)
    extent = grid_extent(from_tree.train[0].shape, from_tree.train[0].spacing)
    samples = []
    for eyes in (from_tree.train, from_store.train):
        torch.manual_seed(0)
        patches = StridedPatchDataset(eyes, extent, [8, 4, 2], mode, patches_per_eye=2)
        samples.append([patches[i] for i in range(len(patches))] + list(FullEyeDataset(eyes[:2], extent)))
    assert len(samples[0]) == len(samples[1]) == 10
    for tree_sample, store_sample in zip(*samples):
        assert tree_sample.keys() == store_sample.keys()
        for key in tree_sample:
            torch.testing.assert_close(store_sample[key], tree_sample[key], rtol=0, atol=0)


def test_the_median_atlas_of_stored_eyes_is_that_of_the_tree(data) -> None:
    from_tree, from_store = _both(data)
    expected, found = median_atlas(from_tree.train, memory_mb=0.001), median_atlas(from_store.train, memory_mb=0.001)
    np.testing.assert_array_equal(found.intensity, expected.intensity)
    np.testing.assert_array_equal(found.labels, expected.labels)


def _array_bytes(root: object) -> int:
    """Bytes of every numpy array reachable from ``root`` (its object graph, without modules and classes)."""
    seen, stack, total = set(), [root], 0
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (type, type(np))):
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            total += item.nbytes
        stack += gc.get_referents(item)
    return total


def test_training_data_from_the_store_holds_no_eye(data) -> None:
    """After a pass over every patch and every whole eye, the tree's datasets hold all four training eyes;
    the store's hold only metadata (positions, the label table), less than one eye's voxels."""
    from_tree, from_store = _both(data, subsample=1)
    extent = grid_extent(from_tree.train[0].shape, from_tree.train[0].spacing)
    one_eye = from_tree.train[0].oct.nbytes + from_tree.train[0].labels.nbytes
    held = {}
    for name, eyes in (("tree", from_tree.train), ("store", from_store.train)):
        datasets = (StridedPatchDataset(eyes, extent, [8, 4, 8]), FullEyeDataset(eyes, extent))
        for dataset in datasets:
            for i in range(len(dataset)):
                dataset[i]
        held[name] = _array_bytes(datasets)
    assert held["tree"] >= 4 * one_eye
    assert held["store"] < one_eye / 4


def test_a_store_at_an_fsspec_url_gives_the_same_eyes(data) -> None:
    tree, store, folds = data
    url = "memory://atlas_store_test/eyes.zarr"
    write_store(url, (read_eye(tree, subject, lat) for subject, lat in list_eyes(tree)), overwrite=True, progress=False)
    local = read_store_fold_eyes(store, folds, 0, LabelMapping.default(), True, 8)
    remote = read_store_fold_eyes(url, folds, 0, LabelMapping.default(), True, 8)
    assert [eye.eye_id for eye in remote.train] == [eye.eye_id for eye in local.train]
    for a, b in zip(local.train, remote.train):
        np.testing.assert_array_equal(b.read([0, 2]).oct, a.read([0, 2]).oct)
    np.testing.assert_array_equal(remote.test[1].labels, local.test[1].labels)


def test_subject_absent_from_the_store_is_named(data, tmp_path) -> None:
    _, store, _ = data
    write_folds(tmp_path / "folds.yml", {0: {"TRAIN": ["sub001", "sub099"], "TEST": ["sub003"]}})
    with pytest.raises(DataError, match=r"eyes.zarr: subject sub099 of the fold file has no eye"):
        read_store_fold_eyes(store, tmp_path / "folds.yml", 0, LabelMapping.default(), False)


def _args(data_dir: Path, folds: Path, out: Path, *extra: str) -> list[str]:
    """The tiny end-to-end run of test_atlas_pipeline on every 8th B-scan (later overrides win)."""
    settings = [
        f"SETTINGS.DATA_DIR={data_dir}",
        f"SETTINGS.FOLD_FILE={folds}",
        "DATA.SUBSMPL_FACTOR=8",
        "DATA.PATCH_SIZE=[8, 4, 2]",
        "EVALUATION.RESOLUTION_FACTORS=[1, 4]",
        "EVALUATION.BASELINES=['atlas', 'affine']",
        *extra,
    ]
    return [str(CONFIG), "--output", str(out), *[part for setting in TINY + settings for part in ("--set", setting)]]


def test_a_store_with_a_cache_folder_is_refused(data, tmp_path) -> None:
    _, store, folds = data
    with pytest.raises(ConfigError, match=r"DATA.CACHE_DIR = .*not used with an eye store"):
        GINR_Atlas_base.main(_args(store, folds, tmp_path / "run", f"DATA.CACHE_DIR={tmp_path / 'cache'}"))


@pytest.mark.slow
def test_a_run_from_the_store_trains_the_same_weights_and_scores_as_from_the_tree(data, tmp_path) -> None:
    """The whole fold (median atlas, atlas pretraining, registration, the unseen eyes' fits and scores),
    seeded alike, from the tree and from its store."""
    tree, store, folds = data
    runs = {name: tmp_path / name for name in ("tree", "store")}
    for name, data_dir in (("tree", tree), ("store", store)):
        assert GINR_Atlas_base.main(_args(data_dir, folds, runs[name])) == 0
    for stage in ("pretrain_atlas", "registration"):
        weights = [load_checkpoint(runs[name] / "checkpoints" / stage / "last.ckpt")["state_dict"] for name in runs]
        assert weights[0].keys() == weights[1].keys()
        for key in weights[0]:
            torch.testing.assert_close(weights[1][key], weights[0][key], rtol=0, atol=0, msg=f"{stage} {key}")
    for table in ("metrics_all.csv", "metrics_all_reference.csv"):  # ours (1 eye) and the paper's (both eyes)
        rows = []
        for run in runs.values():
            with open(run / "results" / table) as handle:
                rows.append(
                    [{key: value for key, value in row.items() if key != "time_s"} for row in csv.DictReader(handle)]
                )
        assert len(rows[0]) >= 4 and rows[0] == rows[1], table
        assert {row["eye_id"] for row in rows[1]} <= {"sub003_OS", "sub003_OD"}


def test_a_stored_eye_with_nan_is_refused_by_the_checks_of_validate(data, tmp_path) -> None:
    """A B-scan chunk holding NaN (written past the store's own writer) is refused when the fold is
    read, by the same checks as a tree eye (eye_problems), naming the store and the eye."""
    import shutil

    import zarr

    _, store, folds = data
    broken = tmp_path / "broken.zarr"
    shutil.copytree(store, broken)
    oct_array = zarr.open_array(str(broken / "sub002_OD" / "oct"), mode="r+")
    bscan = oct_array[8]
    bscan[3, 2] = np.nan
    oct_array[8] = bscan
    with pytest.raises(DataError, match=r"broken\.zarr: oct of eye sub002_OD holds 1 NaN"):
        read_store_fold_eyes(broken, folds, 0, LabelMapping.default(), True, 8)
