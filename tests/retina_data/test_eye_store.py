"""The eye store: exact round trips, lazy per-B-scan reads, URLs, atomic writes and damaged chunks."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import fsspec
import numpy as np
import pytest
import zarr
from eye_builders import build_eye
from zarr.storage import LocalStore, WrapperStore

from retina_data.cli import main
from retina_data.containers import read_container, write_container
from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import Eye
from retina_data.eye_store import EyeStore, is_store, write_store
from retina_data.folds import FOLDS_FILE, read_folds
from retina_data.phantom import PhantomConfig, make_population
from retina_data.tree import list_eyes, read_eye, write_dataset_info, write_eye
from retina_data.validation import validate


@pytest.fixture(scope="module")
def phantom_eyes() -> list[Eye]:
    """Two phantom subjects (four eyes, labelled, with SLO), tiny."""
    return make_population(PhantomConfig(n_subjects=2, shape=(32, 8, 6)))


def assert_same_eye(read: Eye, original: Eye) -> None:
    """Every part of the eye equal, bit for bit, with the store's dtypes."""
    assert read.eye_id == original.eye_id
    assert read.oct.dtype == np.float32 and np.array_equal(read.oct, original.oct)
    assert (read.labels is None) == (original.labels is None)
    if original.labels is not None:
        assert read.labels.dtype == np.uint8 and np.array_equal(read.labels, original.labels)
    assert (read.slo is None) == (original.slo is None)
    if original.slo is not None:
        assert np.array_equal(read.slo, original.slo) and np.array_equal(read.slo_positions, original.slo_positions)
    assert read.spacing == original.spacing
    assert np.array_equal(read.bscan_positions, original.bscan_positions)
    assert read.meta == json.loads(json.dumps(original.meta))


def variants() -> list[Eye]:
    """Eyes that exercise every optional part: non-uniform B-scans, no labels, no SLO, an SLO
    on its own denser grid."""
    uneven = np.array([0.0, 0.1, 0.35, 0.4, 0.9, 1.0, 1.6, 2.0])
    dense_slo = build_eye("sub004", "OD", slo=False)
    return [
        build_eye("sub001", "OD", positions=uneven, seed=1),
        build_eye("sub002", "OS", labels=False, seed=2),
        build_eye("sub003", "OD", slo=False, seed=3),
        replace(
            dense_slo,
            slo=np.linspace(0, 1, 12 * 20, dtype=np.float32).reshape(12, 20),
            slo_positions=np.linspace(0.0, 0.84, 20),
        ),
    ]


def test_phantom_eyes_read_back_exactly(phantom_eyes, tmp_path: Path) -> None:
    location = write_store(tmp_path / "eyes.zarr", phantom_eyes, progress=False)
    store = EyeStore.open(location)
    assert store.eye_ids == [eye.eye_id for eye in phantom_eyes] and len(store) == 4
    assert store.num_labels == 13
    for eye in phantom_eyes:
        assert_same_eye(store.read_eye(eye.eye_id), eye)


def test_non_uniform_unlabelled_and_slo_less_eyes_read_back_exactly(tmp_path: Path) -> None:
    eyes = variants()
    store = EyeStore.open(write_store(tmp_path / "eyes.zarr", eyes, progress=False))
    for eye in eyes:
        assert_same_eye(store.read_eye(eye.eye_id), eye)
    info = store.info("sub002_OS")
    assert (info.has_labels, info.has_slo, info.shape) == (False, True, (40, 12, 8))
    assert store.info("sub003_OD").slo_positions is None


def test_arrays_follow_ome_zarr_axes_with_a_millimetre_scale(phantom_eyes, tmp_path: Path) -> None:
    eye = phantom_eyes[0]
    write_store(tmp_path / "eyes.zarr", [eye], progress=False)
    group = zarr.open_group(str(tmp_path / "eyes.zarr" / eye.eye_id), mode="r")
    height, width, depth = eye.shape
    assert group["oct"].shape == (depth, height, width) and group["oct"].chunks == (1, height, width)
    assert np.array_equal(group["oct"][2], eye.oct[:, :, 2])
    multiscale = group.attrs["ome"]["multiscales"][0]
    assert [axis["name"] for axis in multiscale["axes"]] == ["z", "y", "x"]
    assert {axis["unit"] for axis in multiscale["axes"]} == {"millimeter"}
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [eye.spacing[2], eye.spacing[0], eye.spacing[1]]


def test_a_subset_of_bscans_is_the_eye_with_those_bscans_selected(phantom_eyes, tmp_path: Path) -> None:
    eye = phantom_eyes[1]
    store = EyeStore.open(write_store(tmp_path / "eyes.zarr", [eye], progress=False))
    part = store.read_eye(eye.eye_id, [1, 2, 5])
    expected = eye.select_bscans([1, 2, 5])
    assert np.array_equal(part.oct, expected.oct) and np.array_equal(part.labels, expected.labels)
    assert np.array_equal(part.bscan_positions, expected.bscan_positions) and part.spacing == expected.spacing
    assert np.array_equal(part.slo, eye.slo)  # the SLO stays whole
    intensity, labels = store.read_bscans(eye.eye_id, [4, 0, 4])
    assert np.array_equal(intensity, eye.oct[:, :, [4, 0, 4]]) and np.array_equal(labels, eye.labels[:, :, [4, 0, 4]])
    with pytest.raises(DataError, match=r"0..5"):
        store.read_bscans(eye.eye_id, [6])
    with pytest.raises(DataError, match="strictly increasing"):
        store.read_eye(eye.eye_id, [2, 1])


class CountingStore(WrapperStore):
    """A store that records every key read through it."""

    reads: ClassVar[list[str]] = []

    async def get(self, key, prototype, byte_range=None):
        CountingStore.reads.append(key)
        return await self._store.get(key, prototype, byte_range)


def test_opening_reads_the_root_attributes_and_a_read_only_the_chunks_asked_for(phantom_eyes, tmp_path: Path) -> None:
    path = Path(write_store(tmp_path / "eyes.zarr", phantom_eyes, progress=False))
    CountingStore.reads = []
    wrapped = CountingStore(LocalStore(str(path), read_only=True))
    store = EyeStore(zarr.open_group(wrapped, mode="r", zarr_format=3, use_consolidated=False), str(path))
    assert CountingStore.reads == ["zarr.json"]
    store.read_bscans("sub002_OS", [3, 1])
    chunks = sorted(key for key in CountingStore.reads if "/c/" in key)
    assert chunks == [
        "sub002_OS/labels/c/1/0/0",
        "sub002_OS/labels/c/3/0/0",
        "sub002_OS/oct/c/1/0/0",
        "sub002_OS/oct/c/3/0/0",
    ]
    assert all(key.startswith("sub002_OS/") for key in CountingStore.reads[1:])


def test_an_eyes_metadata_is_read_once_and_later_reads_read_only_chunks(phantom_eyes, tmp_path: Path) -> None:
    """The eye group's and arrays' metadata documents are read on the first use of the eye only
    (before: 4 documents per read); the arrays' metadata is one object for eyes of one shape."""
    path = Path(write_store(tmp_path / "eyes.zarr", phantom_eyes, progress=False))
    CountingStore.reads = []
    wrapped = CountingStore(LocalStore(str(path), read_only=True))
    store = EyeStore(zarr.open_group(wrapped, mode="r", zarr_format=3, use_consolidated=False), str(path))
    first = store.read_eye("sub002_OS", [1, 3])
    documents = [key for key in CountingStore.reads if key.endswith("zarr.json")]
    assert documents == [
        "zarr.json",
        "sub002_OS/zarr.json",
        "sub002_OS/oct/zarr.json",
        "sub002_OS/labels/zarr.json",
        "sub002_OS/slo/zarr.json",
    ]
    CountingStore.reads = []
    again = store.read_eye("sub002_OS", [1, 3])
    store.read_bscans("sub002_OS", [0])
    store.info("sub002_OS")
    assert sorted(CountingStore.reads) == [
        "sub002_OS/labels/c/0/0/0",
        "sub002_OS/labels/c/1/0/0",
        "sub002_OS/labels/c/3/0/0",
        "sub002_OS/oct/c/0/0/0",
        "sub002_OS/oct/c/1/0/0",
        "sub002_OS/oct/c/3/0/0",
        "sub002_OS/slo/c/0/0",
    ]
    assert_same_eye(again, first)
    again.meta["changed"] = True  # a returned eye's meta is its own
    assert "changed" not in store.read_eye("sub002_OS").meta
    store.info("sub001_OD")
    assert store._opened["sub001_OD"].arrays["oct"] is store._opened["sub002_OS"].arrays["oct"]


def test_bscans_read_fine_when_other_bscans_chunks_are_gone(phantom_eyes, tmp_path: Path) -> None:
    path = Path(write_store(tmp_path / "eyes.zarr", phantom_eyes, progress=False))
    for bscan in (0, 2, 3, 4, 5):
        (path / "sub001_OD" / "oct" / "c" / str(bscan) / "0" / "0").unlink()
    shutil.rmtree(path / "sub001_OS")
    intensity, _ = EyeStore.open(path).read_bscans("sub001_OD", [1])
    assert np.array_equal(intensity[:, :, 0], phantom_eyes[0].oct[:, :, 1])


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_a_store_at_an_fsspec_url_reads_back_exactly(scheme, phantom_eyes, tmp_path: Path) -> None:
    url = f"memory://{uuid.uuid4().hex}/eyes.zarr" if scheme == "memory" else (tmp_path / "eyes.zarr").as_uri()
    assert write_store(url, phantom_eyes[:2], progress=False) == url
    assert is_store(url)
    store = EyeStore.open(url)
    assert_same_eye(store.read_eye("sub001_OS"), phantom_eyes[1])
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_store(url, phantom_eyes[:1], progress=False)
    write_store(url, phantom_eyes[2:3], overwrite=True, progress=False)
    assert EyeStore.open(url).eye_ids == ["sub002_OD"]
    other = url.replace("eyes.zarr", "results")
    with fsspec.open(f"{other}/table.csv", "w") as handle:
        handle.write("earlier results\n")
    with pytest.raises(OutputExistsError, match="not an eye store"):  # a folder of other files is never cleared
        write_store(other, phantom_eyes[:1], overwrite=True, progress=False)


def test_an_existing_store_is_replaced_only_with_overwrite_and_a_failed_write_leaves_it(
    phantom_eyes, tmp_path: Path
) -> None:
    path = tmp_path / "eyes.zarr"
    write_store(path, phantom_eyes[:1], progress=False)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_store(path, phantom_eyes[1:2], progress=False)

    def failing():
        yield phantom_eyes[1]
        raise DataError("source broke mid-way")

    with pytest.raises(DataError, match="mid-way"):
        write_store(path, failing(), overwrite=True, progress=False)
    assert EyeStore.open(path).eye_ids == ["sub001_OD"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eyes.zarr"]  # no temporary folder left
    write_store(path, phantom_eyes[1:2], overwrite=True, progress=False)
    assert EyeStore.open(path).eye_ids == ["sub001_OS"]
    (tmp_path / "results").mkdir()
    with pytest.raises(OutputExistsError, match="not an eye store"):
        write_store(tmp_path / "results", phantom_eyes[:1], overwrite=True, progress=False)


def test_unstorable_eyes_are_refused_before_anything_is_written(phantom_eyes, tmp_path: Path) -> None:
    twice = [phantom_eyes[0], replace(phantom_eyes[0], subject="SUB001")]
    with pytest.raises(DataError, match="twice"):
        write_store(tmp_path / "a.zarr", twice, progress=False)
    nan = replace(phantom_eyes[0], oct=np.where(np.arange(6) == 2, np.nan, phantom_eyes[0].oct).astype(np.float32))
    with pytest.raises(DataError, match="sub001_OD: OCT: holds 256 NaN"):
        write_store(tmp_path / "b.zarr", [nan], progress=False)
    with pytest.raises(DataError, match="no eyes"):
        write_store(tmp_path / "c.zarr", [], progress=False)
    assert list(tmp_path.iterdir()) == []


def _damage(path: Path) -> None:
    """B-scan 2 of sub001_OD's OCT deleted, B-scan 4 of sub002_OS's labels with a flipped byte."""
    (path / "sub001_OD" / "oct" / "c" / "2" / "0" / "0").unlink()
    chunk = path / "sub002_OS" / "labels" / "c" / "4" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


def test_a_missing_or_corrupt_chunk_is_named_with_its_eye_and_bscan(phantom_eyes, tmp_path: Path) -> None:
    path = Path(write_store(tmp_path / "eyes.zarr", phantom_eyes, progress=False))
    _damage(path)
    store = EyeStore.open(path)
    with pytest.raises(DataError, match=r"eye sub001_OD: oct chunk\(s\) of B-scan\(s\) 2 missing"):
        store.read_eye("sub001_OD")
    with pytest.raises(DataError, match="eye sub002_OS: labels chunk of B-scan 4 cannot be read"):
        store.read_bscans("sub002_OS", [3, 4])
    problems = [str(problem) for problem in validate(path)]
    assert len(problems) == 2
    assert "sub001_OD: oct chunk(s) of B-scan(s) 2 missing" in problems[0]
    assert "sub002_OS: labels chunk of B-scan 4 cannot be read" in problems[1]


def test_validate_applies_the_array_checks_to_each_eye(tmp_path: Path) -> None:
    bright = build_eye("sub001", "OD")
    bright = replace(bright, oct=bright.oct * 255)
    path = write_store(tmp_path / "eyes.zarr", [bright, build_eye("sub002", "OD")], progress=False)
    problems = [str(problem) for problem in validate(path)]
    assert len(problems) == 1 and "oct of eye sub001_OD values" in problems[0] and "[0, 1]" in problems[0]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda attrs: attrs.pop("format"), "not an eye store"),
        (lambda attrs: attrs.update(format_version=99), "format_version = 99"),
        (lambda attrs: attrs.update(eye_ids=["../sub001_OD"]), "'../sub001_OD'"),
        (lambda attrs: attrs.update(eye_ids=["sub001"]), "<subject>_<OD|OS>"),
        (lambda attrs: attrs.update(num_labels=0), "num_labels = 0"),
    ],
)
def test_wrong_root_attributes_are_refused_on_opening(change, needle, phantom_eyes, tmp_path: Path) -> None:
    path = Path(write_store(tmp_path / "eyes.zarr", phantom_eyes[:1], progress=False))
    document = json.loads((path / "zarr.json").read_text())
    change(document["attributes"])
    (path / "zarr.json").write_text(json.dumps(document))
    with pytest.raises(DataError, match=needle.replace("|", r"\|").replace("(", r"\(")):
        EyeStore.open(path)
    assert needle in str(validate(path)[0])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda attrs: attrs.update(spacing=[0.1, 0.0, 0.1]), "spacing"),
        (lambda attrs: attrs.update(bscan_positions=[0.0, 0.2, 0.1, 0.3, 0.4, 0.5]), "strictly increasing"),
        (lambda attrs: attrs.update(laterality="OD"), "laterality = 'OD'"),
        (lambda attrs: attrs.update(has_labels="yes"), "has_labels"),
    ],
)
def test_wrong_eye_attributes_are_named_with_the_eye(change, needle, phantom_eyes, tmp_path: Path) -> None:
    path = Path(write_store(tmp_path / "eyes.zarr", phantom_eyes[:2], progress=False))
    document_path = path / "sub001_OS" / "zarr.json"
    document = json.loads(document_path.read_text())
    change(document["attributes"])
    document_path.write_text(json.dumps(document))
    store = EyeStore.open(path)
    with pytest.raises(DataError, match="eye sub001_OS"):
        store.info("sub001_OS")
    problems = [str(problem) for problem in validate(path)]
    assert len(problems) == 1 and "eye sub001_OS" in problems[0] and needle in problems[0]


def test_what_is_not_a_store_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.zarr").mkdir()
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    for name, needle in (
        ("empty.zarr", "cannot open as an eye store"),
        ("plain.zarr", "not an eye store"),
        ("missing.zarr", "eye store not found"),
    ):
        with pytest.raises(DataError, match=needle):
            EyeStore.open(tmp_path / name)
    assert not is_store(tmp_path) and is_store(tmp_path / "missing.zarr")


def run_cli(argv: list[str]) -> int:
    from retina_data.commandline import run_cli as run

    with pytest.raises(SystemExit) as stop:
        run(main, argv)
    return int(stop.value.code)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A tree of two subjects with a folds file."""
    data_dir = tmp_path / "tree"
    for i, laterality in enumerate(("OD", "OS", "OD")):
        write_eye(data_dir, build_eye(f"sub00{1 + i // 2}", laterality, seed=i))
    write_dataset_info(data_dir, "tree")
    (data_dir / "cross-validation-folds.yml").write_text("FOLD:\n  0: {TRAIN: [sub001], TEST: [sub002]}\n")
    return data_dir


def test_store_command_writes_a_tree_exactly_with_its_folds_file(tree, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eyes.zarr"
    assert run_cli(["store", str(tree), str(out)]) == 0
    assert "wrote 3 eye(s)" in capsys.readouterr().out
    store = EyeStore.open(out)
    for subject, laterality in list_eyes(tree):
        assert_same_eye(store.read_eye(f"{subject}_{laterality}"), read_eye(tree, subject, laterality))
    assert (out / "cross-validation-folds.yml").read_text() == (tree / "cross-validation-folds.yml").read_text()
    assert run_cli(["validate", str(out)]) == 0
    assert run_cli(["info", str(out)]) == 0
    assert "3 eye(s)" in capsys.readouterr().out
    assert run_cli(["store", str(tree), str(out)]) == 2
    assert (
        capsys.readouterr().err.strip().splitlines()[-1] == f"error: {out}: already exists; pass --overwrite "
        "to replace it"
    )


def test_store_command_writes_containers_exactly_and_subsamples(tree, tmp_path: Path) -> None:
    eyes = [read_eye(tree, subject, laterality) for subject, laterality in list_eyes(tree)]
    first, second = tmp_path / "train.npz", tmp_path / "test.npz"
    write_container(first, eyes[:2])
    write_container(second, eyes[2:])
    out = tmp_path / "eyes.zarr"
    assert run_cli(["store", str(first), str(second), str(out), "--subsample", "2"]) == 0
    store = EyeStore.open(out)
    for eye in read_container(first) + read_container(second):
        assert_same_eye(store.read_eye(eye.eye_id), eye.subsample(2))
    assert not (out / FOLDS_FILE).exists()  # containers hold no folds: the folds command splits the store's subjects
    assert run_cli(["folds", str(out), "--k", "2", "--output", str(out / FOLDS_FILE)]) == 0
    assert sorted(read_folds(out / FOLDS_FILE)[0]["TRAIN"] + read_folds(out / FOLDS_FILE)[0]["TEST"]) == [
        "sub001",
        "sub002",
    ]


def test_validate_command_exits_2_naming_the_damaged_chunks(phantom_eyes, tmp_path: Path, capsys) -> None:
    path = Path(write_store(tmp_path / "eyes.zarr", phantom_eyes, progress=False))
    _damage(path)
    assert run_cli(["validate", str(path)]) == 2
    printed = capsys.readouterr().out
    assert (
        "sub001_OD: oct chunk(s) of B-scan(s) 2 missing" in printed and "sub002_OS: labels chunk of B-scan 4" in printed
    )
    assert run_cli(["store", str(tmp_path / "nowhere"), str(tmp_path / "x.zarr")]) == 2
    assert "nowhere: not found" in capsys.readouterr().err
