"""Training eyes streamed from an eye store give the batches and the training of eyes kept on the device."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from tiny_configs import tiny_config, tiny_trainer

from anisotropic_interpolation.distributed import launch, leave
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.pipeline import (
    Experiment,
    load_fold,
    minmax_normalise_for,
    population_volumes,
    train_population,
)
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.streaming import StreamedEye, StreamedVolumes
from anisotropic_interpolation.training import (
    BatchSource,
    NetworkTrainer,
    StepPlan,
    heldout_losses,
    objective_from_config,
)
from retina_data.errors import ConfigError, DataError
from retina_data.eye_store import EyeStore, write_store
from retina_data.preprocessing import minmax_normalise_eye

FACTOR = 4


@pytest.fixture(scope="module")
def store(tiny_eyes, tmp_path_factory) -> EyeStore:
    """The four dense tiny phantom eyes in an eye store, their OCT scaled to [0.2, 0.7] (so that
    min-max normalisation changes it)."""
    eyes = [dataclasses.replace(eye, oct=(0.2 + 0.5 * eye.oct).astype(np.float32), meta={}) for eye in tiny_eyes]
    location = tmp_path_factory.mktemp("store") / "eyes.zarr"
    write_store(location, eyes, progress=False)
    return EyeStore.open(location)


def both(store: EyeStore, *, normalise: bool = False, use_slo: bool = True) -> tuple[SparseVolumes, StreamedVolumes]:
    """The store's eyes at every 4th B-scan kept on the CPU and streamed from the store."""
    eyes = [store.read_eye(eye_id).subsample(FACTOR) for eye_id in store.eye_ids]
    if normalise:
        eyes = [minmax_normalise_eye(eye) for eye in eyes]
    kept = SparseVolumes.from_eyes(eyes, use_labels=True, use_slo=use_slo, slice_scale=1.0, device="cpu")
    streamed = StreamedVolumes.from_store(
        store,
        store.eye_ids,
        factor=FACTOR,
        use_labels=True,
        use_slo=use_slo,
        slice_scale=1.0,
        device="cpu",
        normalise=normalise,
        threads=2,
    )
    return kept, streamed


def assert_same_batches(first: list, second: list) -> None:
    assert len(first) == len(second)
    for one, other in zip(first, second):
        for field in dataclasses.fields(one):
            a, b = getattr(one, field.name), getattr(other, field.name)
            assert (a is None) == (b is None), field.name
            if a is not None:
                assert a.dtype == b.dtype and torch.equal(a, b), field.name


@pytest.mark.parametrize("sampling", ["patches", "bscan"])
@pytest.mark.parametrize("normalise", [False, True])
def test_streamed_batches_equal_those_of_the_eyes_on_the_device(store, sampling, normalise) -> None:
    kept, streamed = both(store, normalise=normalise)
    assert (streamed.num_eyes, streamed.height, streamed.width, streamed.num_slices) == kept.intensity.shape
    plan = (
        StepPlan.for_bscans(kept, False, 6)
        if sampling == "bscan"
        else StepPlan.for_data(kept, 4 * 9 * 2, 3, 6, micro_batch_points=4 * 9)
    )
    sources = [BatchSource(data, plan, torch.Generator().manual_seed(3)) for data in (kept, streamed)]
    for _ in range(2):
        for source in sources:
            source.start_epoch()
        for _ in range(plan.steps_per_epoch):
            assert_same_batches(sources[0].next(), sources[1].next())
    assert streamed.bscans_read > 0
    if normalise:  # the stored OCT spans [0.2, 0.7]: normalised, some point of the eye is 0 and some 1
        whole = streamed.bscans(torch.zeros(4, dtype=torch.long), torch.arange(4)).intensity
        assert whole.min().item() == 0.0 and whole.max().item() == 1.0


def test_a_step_reads_each_of_its_distinct_bscans_once(store) -> None:
    _, streamed = both(store, use_slo=False)
    eye, bscan = torch.tensor([1, 1, 3, 1]), torch.tensor([2, 2, 0, 3])
    batch = streamed.bscans(eye, bscan)
    assert streamed.bscans_read == 3  # (1, 2) twice, (3, 0), (1, 3)
    assert streamed.bytes_read == 3 * 32 * 16 * 5  # float32 OCT and uint8 labels of 32 x 16 B-scans
    truth = store.read_eye(store.eye_ids[1])
    assert torch.equal(batch.intensity[3], torch.as_tensor(truth.oct[:, :, 3 * FACTOR]))
    assert torch.equal(batch.eye, eye.repeat_interleave(32 * 16))


def test_subsets_and_bscan_selections_are_those_of_the_eyes_on_the_device(store) -> None:
    kept, streamed = both(store)
    index = torch.tensor([0, 3])
    for one, other in (
        (kept.subset([3, 1]), streamed.subset([3, 1])),
        (kept.select_bscans(index), streamed.select_bscans(index)),
    ):
        assert (other.num_eyes, other.num_slices) == (one.num_eyes, one.num_slices)
        generator = torch.Generator().manual_seed(5)
        first = one.sample(5, 4, generator)
        generator.manual_seed(5)
        assert_same_batches([first], [other.sample(5, 4, generator)])
    assert streamed.subset([3, 1]).eye_ids == [store.eye_ids[3], store.eye_ids[1]]


@pytest.mark.parametrize("sampling", ["patches", "bscan"])
def test_training_on_streamed_eyes_gives_the_same_weights_and_codes(store, make_config, sampling) -> None:
    config = make_config(TRAINING={"SAMPLING": sampling, "TOTAL_EPOCHS": 2, "STEPS_PER_EPOCH": 4, "HOLDOUT_BSCANS": 1})
    reference = tiny_trainer(config, [store.read_eye(eye_id) for eye_id in store.eye_ids])
    reference.train()
    streamed = StreamedVolumes.from_store(
        store, store.eye_ids, factor=FACTOR, use_labels=True, use_slo=True, slice_scale=1.0, device="cpu"
    )
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    trainer = NetworkTrainer(network, streamed, config, None, progress=False)
    trainer.train()
    assert torch.equal(trainer.codes, reference.codes)
    for name, value in reference.network.state_dict().items():
        assert torch.equal(network.state_dict()[name], value), name
    assert [row["heldout"] for row in trainer.history] == [row["heldout"] for row in reference.history]


def test_eyes_of_different_shapes_or_without_labels_are_refused(tiny_eyes, tmp_path) -> None:
    smaller = dataclasses.replace(tiny_eyes[1].select_bscans(slice(0, 12)), meta={})
    unlabelled = dataclasses.replace(tiny_eyes[2], labels=None, meta={})
    location = tmp_path / "mixed.zarr"
    write_store(location, [dataclasses.replace(tiny_eyes[0], meta={}), smaller, unlabelled], progress=False)
    store = EyeStore.open(location)
    first, second, third = store.eye_ids
    with pytest.raises(DataError, match="one shape"):
        StreamedVolumes.from_store(
            store, [first, second], factor=FACTOR, use_labels=False, use_slo=False, slice_scale=1.0, device="cpu"
        )
    with pytest.raises(DataError, match=f"eye {third}: has no labels"):
        StreamedVolumes.from_store(
            store, [first, third], factor=FACTOR, use_labels=True, use_slo=False, slice_scale=1.0, device="cpu"
        )


def test_the_pipeline_trains_on_streamed_eyes_as_on_eyes_kept_on_the_device(tiny_eyes, make_config, tmp_path) -> None:
    """A store fold (min-max normalised on load, as the gen-INR script does) trained with
    ``TRAINING.DATA_ON_DEVICE`` true and false: the same network and codes."""
    location = tmp_path / "eyes.zarr"
    write_store(
        location,
        [dataclasses.replace(eye, oct=(0.2 + 0.5 * eye.oct).astype(np.float32), meta={}) for eye in tiny_eyes],
        progress=False,
    )
    (location / "cross-validation-folds.yml").write_text("FOLD:\n  0: {TRAIN: [sub002], TEST: [sub001]}\n")
    trained = []
    for on_device in (True, False):
        config = make_config(
            SETTINGS={"IMG_DIR": str(location), "FOLD": 0},
            TRAINING={"LATENT_CODE": {"SIZE": 8}, "DATA_ON_DEVICE": on_device, "TOTAL_EPOCHS": 2},
        )
        assert minmax_normalise_for(config, "train_test_geninr")
        data = load_fold(config, minmax_normalise_for(config, "train_test_geninr"))
        experiment = Experiment(
            config=config,
            config_path=tmp_path / "config.yaml",
            device=torch.device("cpu"),
            run_dir=tmp_path / f"run_{on_device}",
            resume=False,
            overwrite=False,
            progress=False,
            data=data,
        )
        torch.manual_seed(0)
        network, codes, finished = train_population(experiment, data)
        assert finished and codes is not None and codes.shape == (2, 8)
        trained.append((network.state_dict(), codes))
    (kept, kept_codes), (streamed, streamed_codes) = trained
    assert torch.equal(kept_codes, streamed_codes)
    assert all(torch.equal(kept[name], streamed[name]) for name in kept)


def test_streaming_from_a_folder_that_is_no_store_is_a_config_error(make_config, tmp_path) -> None:
    config = make_config(SETTINGS={"IMG_DIR": str(tmp_path)}, TRAINING={"DATA_ON_DEVICE": False})
    with pytest.raises(ConfigError, match=r"TRAINING.DATA_ON_DEVICE = false .* expected SETTINGS.IMG_DIR to be one"):
        load_fold(config)


def test_heldout_losses_read_at_most_images_at_once_bscans_and_equal_those_on_the_device(store, make_config) -> None:
    kept, streamed = both(store)
    streamed.images_at_once = 3
    sizes: list[int] = []
    read = streamed.read
    streamed.read = lambda pairs: sizes.append(pairs.size) or read(pairs)  # type: ignore[method-assign]
    torch.manual_seed(0)
    network = build_network(make_config(), NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    objective = objective_from_config(network, make_config())
    codes = torch.randn(4, 8) * 0.1
    expected = heldout_losses(objective, kept, codes, False, None)
    assert torch.allclose(heldout_losses(objective, streamed, codes, False, None), expected, rtol=1e-6, atol=0)
    assert sizes == [3, 1] * kept.num_slices


def _cohort_store(tiny_eyes, location, fluid: bool = False) -> str:
    """The tiny eyes and sub002's again as sub003, OCT in [0.2, 0.7], in a store whose fold 0
    trains on sub002 and sub003 (four eyes) and tests on sub001; ``fluid``: one voxel of sub003_OD
    (input B-scan 4) labelled fluid (13)."""
    eyes = [*tiny_eyes, *(dataclasses.replace(eye, subject="sub003") for eye in tiny_eyes[2:])]
    if fluid:
        labels = eyes[4].labels.copy()
        labels[0, 0, 4] = 13
        eyes[4] = dataclasses.replace(eyes[4], labels=labels)
    write_store(
        location,
        [dataclasses.replace(eye, oct=(0.2 + 0.5 * eye.oct).astype(np.float32), meta={}) for eye in eyes],
        progress=False,
    )
    (location / "cross-validation-folds.yml").write_text("FOLD:\n  0: {TRAIN: [sub002, sub003], TEST: [sub001]}\n")
    return str(location)


def _streamed_config(location: str, **training):
    return tiny_config(
        SETTINGS={"IMG_DIR": location, "FOLD": 0},
        TRAINING={"LATENT_CODE": {"SIZE": 8}, "DATA_ON_DEVICE": False, **training},
    )


def test_a_streamed_fold_holds_training_eyes_as_metadata_each_read_once_to_check_it(
    tiny_eyes, tmp_path, monkeypatch
) -> None:
    """Before: load_fold read every training eye whole and kept it for the run. Now the fold holds
    StreamedEye records (no voxels); each training eye's input B-scans are read once, for the
    checks and its OCT range, which the streamed training then uses instead of reading again."""
    location = _cohort_store(tiny_eyes, tmp_path / "eyes.zarr")
    reads: list[tuple[str, tuple[int, ...] | None]] = []
    read_eye = EyeStore.read_eye
    monkeypatch.setattr(
        EyeStore,
        "read_eye",
        lambda self, eye_id, bscans=None: (
            reads.append((eye_id, None if bscans is None else tuple(bscans))) or read_eye(self, eye_id, bscans)
        ),
    )
    data = load_fold(_streamed_config(location), normalise=True)
    train_ids = ["sub002_OD", "sub002_OS", "sub003_OD", "sub003_OS"]
    assert [eye.eye_id for eye in data.train_inputs] == train_ids
    assert all(isinstance(eye, StreamedEye) and not hasattr(eye, "oct") for eye in data.train_inputs)
    assert sorted(reads) == sorted(
        [("sub001_OD", None), ("sub001_OS", None), *((eye_id, (0, 4, 8, 12)) for eye_id in train_ids)]
    )
    store = EyeStore.open(location)
    for eye in data.train_inputs:
        inputs = store.read_eye(eye.eye_id).subsample(FACTOR).oct
        assert eye.shape == inputs.shape and eye.oct_range == (inputs.min(), inputs.max() - inputs.min())
    reads.clear()
    network_size = {"use_slo": True, "latent_size": 8, "num_classes": 13}
    streamed = population_volumes(
        _streamed_config(location), data.train_inputs, NetworkInputs(**network_size), torch.device("cpu"), data.store
    )
    assert reads == [] and streamed.oct_range is not None  # the ranges came from the check: nothing read again
    kept = [minmax_normalise_eye(store.read_eye(eye_id).subsample(FACTOR)) for eye_id in train_ids]
    expected = SparseVolumes.from_eyes(kept, use_labels=True, use_slo=True, slice_scale=1.0, device="cpu")
    assert_same_batches(
        [expected.sample(6, 4, torch.Generator().manual_seed(1))],
        [streamed.sample(6, 4, torch.Generator().manual_seed(1))],
    )


def test_a_bad_streamed_training_eye_is_refused_when_the_fold_is_loaded(tiny_eyes, tmp_path) -> None:
    fluid = _cohort_store(tiny_eyes, tmp_path / "fluid.zarr", fluid=True)
    with pytest.raises(DataError, match=r"eye sub003_OD: labels go up to 13 but MODEL.NUM_CLASSES = 13"):
        load_fold(_streamed_config(fluid), True)
    location = _cohort_store(tiny_eyes, tmp_path / "eyes.zarr")
    _flip_a_byte(Path(location) / "sub003_OS" / "labels" / "c" / "4" / "0" / "0")
    with pytest.raises(DataError, match="eye sub003_OS: labels chunk of B-scan 4 cannot be read"):
        load_fold(_streamed_config(location), True)
    assert load_fold(_streamed_config(location), True, training=False).train_inputs[3].oct_range is None


def _flip_a_byte(chunk: Path) -> None:
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))


def _fold_worker(rank: int, port: int, good: str, bad: str, folder: str) -> None:
    """One of two processes: load the good fold, then the bad one; write what it read and its error."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        GROUP_RANK="0",
        LOCAL_RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_WORLD_SIZE="2",
    )
    torch.set_num_threads(1)
    fabric = launch(-1, 2, 1)
    data = load_fold(_streamed_config(good), True, fabric=fabric)
    checked = [eye.oct_range is not None for eye in data.train_inputs if isinstance(eye, StreamedEye)]
    try:
        load_fold(_streamed_config(bad), True, fabric=fabric)
        error = ""
    except DataError as exc:
        error = str(exc)
    (Path(folder) / f"rank{rank}.json").write_text(json.dumps({"checked": checked, "error": error}))
    leave(fabric)


def test_each_process_reads_its_own_training_eyes_and_all_refuse_a_bad_one(tiny_eyes, tmp_path) -> None:
    """Two processes: rank 0 reads (checks) eyes 0-1, rank 1 eyes 2-3; a bad eye of rank 1 makes
    both refuse the fold (rank 0 without hanging at the run's next collective)."""
    good = _cohort_store(tiny_eyes, tmp_path / "good.zarr")
    bad = _cohort_store(tiny_eyes, tmp_path / "bad.zarr")
    _flip_a_byte(Path(bad) / "sub003_OS" / "oct" / "c" / "8" / "0" / "0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_fold_worker, args=(port, good, bad, str(tmp_path)), nprocs=2, start_method="spawn")
    first, second = (json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1))
    assert first["checked"] == [True, True, False, False] and second["checked"] == [False, False, True, True]
    assert "eye sub003_OS: oct chunk of B-scan 8 cannot be read" in second["error"]
    assert "a training eye read by another process of this run was refused" in first["error"]
