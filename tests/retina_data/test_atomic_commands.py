"""Commands that write many files write all of them or none: a failure on the way leaves
the output as it was, and nothing that blocks the plain rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import retina_data.export as export
import retina_data.phantom as phantom
import retina_data.preprocessing as preprocessing
from retina_data.errors import OutputExistsError
from retina_data.files import staged_folder
from retina_data.folds import FOLDS_FILE, write_folds_for_tree
from retina_data.phantom import PhantomConfig, write_phantom

TINY = PhantomConfig(n_subjects=2, shape=(32, 8, 4), seed=3)


def _failing_after(calls: int, function):
    """``function`` that raises on its ``calls + 1``-th call, as a full disk or a kill would."""
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        count["n"] += 1
        if count["n"] > calls:
            raise OSError(28, "No space left on device")
        return function(*args, **kwargs)

    return wrapped


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_staged_folder_renames_a_new_folder_into_place_and_merges_into_an_old_one(tmp_path):
    with staged_folder(tmp_path / "new") as staging:
        (staging / "a.txt").write_text("1")
    assert _files(tmp_path / "new") == {"a.txt": b"1"}
    with staged_folder(tmp_path / "new") as staging:
        (staging / "b").mkdir()
        (staging / "b" / "c.txt").write_text("2")
        (staging / "a.txt").write_text("3")
    assert _files(tmp_path / "new") == {"a.txt": b"3", "b/c.txt": b"2"}
    assert [p.name for p in tmp_path.iterdir()] == ["new"]  # no staging folder left


def test_staged_folder_leaves_the_target_untouched_when_the_block_fails(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "out") as staging:
        (staging / "keep.txt").write_text("new")
        raise RuntimeError("interrupted")
    assert _files(tmp_path / "out") == {"keep.txt": b"old"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_phantom_that_fails_half_way_leaves_no_folder_and_the_rerun_succeeds(tmp_path, monkeypatch):
    monkeypatch.setattr(phantom, "write_eye", _failing_after(2, phantom.write_eye))
    with pytest.raises(OSError):
        write_phantom(tmp_path / "data", TINY, progress=False)
    assert not (tmp_path / "data").exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert len(write_phantom(tmp_path / "data", TINY, progress=False)) == 4


def _tree(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    write_phantom(data, TINY, progress=False)
    write_folds_for_tree(data, data / FOLDS_FILE, k=2, seed=0)
    return data


def test_a_subsample_that_fails_half_way_writes_no_file_and_the_rerun_succeeds(tmp_path, monkeypatch):
    data = _tree(tmp_path)
    before = _files(data)
    monkeypatch.setattr(preprocessing, "write_eye", _failing_after(3, preprocessing.write_eye))
    with pytest.raises(OSError):
        preprocessing.write_subsampled(data, [2, 4], progress=False)
    assert _files(data) == before
    monkeypatch.undo()
    written = preprocessing.write_subsampled(data, [2, 4], progress=False)
    volumes = [p for p in written if p.name.endswith(".nii.gz")]
    assert len(volumes) == 4 * 2 * 2 and all(p.is_file() and p.is_relative_to(data) for p in written)
    assert {k: v for k, v in _files(data).items() if k in before} == before  # the SLO and dense files unchanged
    with pytest.raises(OutputExistsError):
        preprocessing.write_subsampled(data, [2], progress=False)


def test_an_export_that_fails_on_the_second_container_writes_neither(tmp_path, monkeypatch):
    data = _tree(tmp_path)
    monkeypatch.setattr(export, "write_container", _failing_after(1, export.write_container))
    with pytest.raises(OSError):
        export.export_containers(data, data / FOLDS_FILE, 0, 2, tmp_path / "npz", progress=False)
    assert not (tmp_path / "npz").exists()
    monkeypatch.undo()
    paths = export.export_containers(data, data / FOLDS_FILE, 0, 2, tmp_path / "npz", progress=False)
    assert [p.is_file() for p in paths] == [True, True]


def test_an_import_that_fails_half_way_leaves_no_part_of_the_eye_and_the_rerun_succeeds(tmp_path, monkeypatch):
    import retina_data.tree as tree
    from retina_data.cli import main

    source = tmp_path / "bscans.tif"
    tifffile.imwrite(
        source, np.random.default_rng(0).integers(0, 255, (3, 32, 8), dtype=np.uint8), photometric="minisblack"
    )
    labels = tmp_path / "labels.tif"
    tifffile.imwrite(labels, np.ones((3, 32, 8), np.uint8), photometric="minisblack")
    argv = [
        "import",
        "stack",
        str(source),
        str(tmp_path / "data"),
        "--spacing",
        "0.004",
        "0.01",
        "0.1",
        "--subject",
        "s1",
        "--laterality",
        "OD",
        "--labels",
        str(labels),
        "--flatten",
        "none",
    ]
    monkeypatch.setattr(tree, "write_nifti", _failing_after(1, tree.write_nifti))  # the OCT, then a full disk
    with pytest.raises(OSError):
        main(argv)
    assert sorted(tmp_path.iterdir()) == sorted([source, labels])  # no data folder, no staging folder
    monkeypatch.undo()
    assert main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "data" / "s1" / "OD").glob("*.nii.gz")) == [
        "oct_flat_od.nii.gz",
        "oct_seg_flat_od.nii.gz",
    ]
