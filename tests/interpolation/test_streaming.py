"""Training eyes streamed from an eye store give the batches and the training of eyes kept on the device."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tiny_configs import tiny_trainer

from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.pipeline import Experiment, load_fold, minmax_normalise_for, train_population
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.streaming import StreamedVolumes
from anisotropic_interpolation.training import (
    BatchSource, NetworkTrainer, StepPlan, heldout_losses, objective_from_config,
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
    streamed = StreamedVolumes.from_store(store, store.eye_ids, factor=FACTOR, use_labels=True, use_slo=use_slo,
                                          slice_scale=1.0, device="cpu", normalise=normalise, threads=2)
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
    plan = (StepPlan.for_bscans(kept, False, 6) if sampling == "bscan"
            else StepPlan.for_data(kept, 4 * 9 * 2, 3, 6, micro_batch_points=4 * 9))
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
    for one, other in ((kept.subset([3, 1]), streamed.subset([3, 1])),
                       (kept.select_bscans(index), streamed.select_bscans(index))):
        assert (other.num_eyes, other.num_slices) == (one.num_eyes, one.num_slices)
        generator = torch.Generator().manual_seed(5)
        first = one.sample(5, 4, generator)
        generator.manual_seed(5)
        assert_same_batches([first], [other.sample(5, 4, generator)])
    assert streamed.subset([3, 1]).eye_ids == [store.eye_ids[3], store.eye_ids[1]]


@pytest.mark.parametrize("sampling", ["patches", "bscan"])
def test_training_on_streamed_eyes_gives_the_same_weights_and_codes(store, make_config, sampling) -> None:
    config = make_config(TRAINING={"SAMPLING": sampling, "TOTAL_EPOCHS": 2, "STEPS_PER_EPOCH": 4,
                                   "HOLDOUT_BSCANS": 1})
    reference = tiny_trainer(config, [store.read_eye(eye_id) for eye_id in store.eye_ids])
    reference.train()
    streamed = StreamedVolumes.from_store(store, store.eye_ids, factor=FACTOR, use_labels=True, use_slo=True,
                                          slice_scale=1.0, device="cpu")
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
        StreamedVolumes.from_store(store, [first, second], factor=FACTOR, use_labels=False, use_slo=False,
                                   slice_scale=1.0, device="cpu")
    with pytest.raises(DataError, match=f"eye {third}: has no labels"):
        StreamedVolumes.from_store(store, [first, third], factor=FACTOR, use_labels=True, use_slo=False,
                                   slice_scale=1.0, device="cpu")


def test_the_pipeline_trains_on_streamed_eyes_as_on_eyes_kept_on_the_device(tiny_eyes, make_config, tmp_path) -> None:
    """A store fold (min-max normalised on load, as the gen-INR script does) trained with
    ``TRAINING.DATA_ON_DEVICE`` true and false: the same network and codes."""
    location = tmp_path / "eyes.zarr"
    write_store(location, [dataclasses.replace(eye, oct=(0.2 + 0.5 * eye.oct).astype(np.float32), meta={})
                           for eye in tiny_eyes], progress=False)
    (location / "cross-validation-folds.yml").write_text("FOLD:\n  0: {TRAIN: [sub002], TEST: [sub001]}\n")
    trained = []
    for on_device in (True, False):
        config = make_config(SETTINGS={"IMG_DIR": str(location), "FOLD": 0},
                             TRAINING={"LATENT_CODE": {"SIZE": 8}, "DATA_ON_DEVICE": on_device, "TOTAL_EPOCHS": 2})
        assert minmax_normalise_for(config, "train_test_geninr")
        data = load_fold(config, minmax_normalise_for(config, "train_test_geninr"))
        experiment = Experiment(config=config, config_path=tmp_path / "config.yaml", device=torch.device("cpu"),
                                run_dir=tmp_path / f"run_{on_device}", resume=False, overwrite=False, progress=False,
                                data=data)
        torch.manual_seed(0)
        network, codes, finished = train_population(experiment, data)
        assert finished and codes is not None and codes.shape == (2, 8)
        trained.append((network.state_dict(), codes))
    (kept, kept_codes), (streamed, streamed_codes) = trained
    assert torch.equal(kept_codes, streamed_codes)
    assert all(torch.equal(kept[name], streamed[name]) for name in kept)


def test_streaming_from_a_folder_that_is_no_store_is_a_config_error(make_config, tmp_path) -> None:
    config = make_config(SETTINGS={"IMG_DIR": str(tmp_path)}, TRAINING={"DATA_ON_DEVICE": False})
    with pytest.raises(ConfigError, match="TRAINING.DATA_ON_DEVICE = false .* expected SETTINGS.IMG_DIR to be one"):
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
