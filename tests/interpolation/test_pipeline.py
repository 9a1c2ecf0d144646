"""Experiment flow: data-dependent inputs, run folders, container folds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from anisotropic_interpolation.model import build_network
from anisotropic_interpolation.pipeline import (
    load_fold,
    minmax_normalise_for,
    network_inputs,
    run_folder,
    run_identity,
    seed_everything,
    volumes,
)
from anisotropic_interpolation.training import NetworkTrainer
from retina_data.containers import container_name, write_container
from retina_data.errors import DataError


def test_eyes_without_labels_or_slo_drop_the_segmentation_head_and_enface_input(make_config, tiny_eyes, capsys) -> None:
    bare = [replace(eye, labels=None, slo=None, slo_positions=None) for eye in tiny_eyes]
    inputs = network_inputs(make_config(), bare, latent_size=8)
    assert (inputs.use_slo, inputs.num_classes) == (False, 0)
    assert "en-face input is dropped" in capsys.readouterr().err


def test_intensity_only_training_lowers_the_loss(make_config, tiny_eyes) -> None:
    config = make_config(TRAINING={"TOTAL_EPOCHS": 6})
    bare = [replace(eye, labels=None, slo=None, slo_positions=None).subsample(4) for eye in tiny_eyes]
    inputs = network_inputs(config, bare, latent_size=8)
    network = build_network(config, inputs)
    history = NetworkTrainer(network, volumes(config, bare, inputs, torch.device("cpu")), config, None).train().history
    assert history[-1]["recon"] < history[0]["recon"]


def test_run_folder_is_named_after_project_and_fold(make_config) -> None:
    config = make_config(SETTINGS={"RESULT_DIR": "results", "PROJECT_NAME": "GenFitOCT", "FOLD": 3})
    assert run_folder(config, None) == Path("results/GenFitOCT_fold3")


def test_container_fold_takes_the_densest_test_container_as_truth(make_config, tiny_eyes, tmp_path: Path) -> None:
    write_container(tmp_path / container_name(4, "train", 1), [eye.subsample(4) for eye in tiny_eyes[:2]])
    write_container(tmp_path / container_name(2, "test", 1), [eye.subsample(2) for eye in tiny_eyes[2:]])
    write_container(tmp_path / container_name(1, "test", 1), tiny_eyes[2:])
    settings = {"IMG_DIR": str(tmp_path), "FOLD": 1, "ENFACE_LAYOUT": "NWD"}
    fold = load_fold(make_config(SETTINGS=settings, EVALUATION={"TRUTH_CONTAINER": "densest"}))
    assert [eye.shape[2] for eye in fold.train_inputs] == [4, 4]
    assert [eye.shape[2] for eye in fold.test_truth] == [16, 16]
    assert np.array_equal(fold.test_inputs[0].oct, fold.test_truth[0].oct[:, :, ::4])
    half = load_fold(make_config(SETTINGS=settings))  # the paper: truth at half the input factor
    assert [eye.shape[2] for eye in half.test_truth] == [8, 8]
    assert np.array_equal(half.test_inputs[0].oct, half.test_truth[0].oct[:, :, ::2])


def test_half_truth_container_missing_is_a_data_error(make_config, tiny_eyes, tmp_path: Path) -> None:
    write_container(tmp_path / container_name(4, "train", 1), [eye.subsample(4) for eye in tiny_eyes[:2]])
    write_container(tmp_path / container_name(1, "test", 1), tiny_eyes[2:])
    with pytest.raises(DataError, match="TRUTH_CONTAINER"):
        load_fold(make_config(SETTINGS={"IMG_DIR": str(tmp_path), "FOLD": 1, "ENFACE_LAYOUT": "NWD"}))


def _reference_container(path: Path, eyes, rng: np.random.Generator) -> None:
    """The eyes as the reference stores them: intensities off [0, 1], en-face [N, D, W], float labels."""
    np.savez_compressed(
        path,
        oct_vols=np.stack([eye.oct * rng.uniform(50, 200) + 10 for eye in eyes]),
        seg_vols=np.stack([eye.labels for eye in eyes]).astype(np.float32),
        enface_imgs=np.stack([eye.slo[:, :: eye.slo.shape[1] // eye.shape[2]].T * 3.0 for eye in eyes]),
        subject_names=np.array([eye.eye_id for eye in eyes]),
        spacing_oct=np.array(eyes[0].spacing),
    )


def test_reference_containers_are_read_and_minmax_normalised_per_volume(make_config, tiny_eyes, tmp_path) -> None:
    rng = np.random.default_rng(0)
    wide = [replace(eye, oct=eye.oct[:, :12], labels=eye.labels[:, :12], slo=eye.slo[:12]) for eye in tiny_eyes]
    _reference_container(tmp_path / container_name(4, "train", 1), [eye.subsample(4) for eye in wide[:2]], rng)
    _reference_container(tmp_path / container_name(4, "test", 1), [eye.subsample(4) for eye in wide[2:]], rng)
    _reference_container(tmp_path / container_name(2, "test", 1), [eye.subsample(2) for eye in wide[2:]], rng)
    config = make_config(SETTINGS={"IMG_DIR": str(tmp_path), "FOLD": 1})
    fold = load_fold(config, minmax_normalise_for(config, "train_test_geninr"))
    for eye in fold.train_inputs + fold.test_inputs + fold.test_truth:
        assert (eye.oct.min(), eye.oct.max()) == (0.0, 1.0) and (eye.slo.min(), eye.slo.max()) == (0.0, 1.0)
        assert eye.labels.dtype == np.uint8 and eye.slo.shape[0] == 12
    sparse, dense = fold.test_inputs[0], fold.test_truth[0]
    assert sparse.shape[2] == 4 and dense.shape[2] == 8
    assert sparse.slo.shape == (12, 4)  # read from the subsmpl4 test container, not cut from the truth
    assert np.allclose(sparse.bscan_positions, dense.bscan_positions[::2])
    assert np.array_equal(sparse.labels, dense.labels[:, :, ::2])
    # the fitting volume is normalised on its own: every 2nd truth B-scan agrees up to an affine map
    slope, offset = np.polyfit(dense.oct[:, :, ::2].ravel(), sparse.oct.ravel(), 1)
    assert np.allclose(sparse.oct, slope * dense.oct[:, :, ::2] + offset, atol=1e-5)
    assert not minmax_normalise_for(config, "train_test_singleinr")
    with pytest.raises(
        DataError, match=r"oct_vols of sub001_OD values 10\.\.155\.5; expected flattened OCT in \[0, 1\]"
    ):
        load_fold(config)  # the stored values, off [0, 1], are refused unless normalised on load


def test_seeding_makes_initial_weights_follow_the_config_seed(make_config, tiny_eyes) -> None:
    config = make_config()
    inputs = network_inputs(config, tiny_eyes, latent_size=8)

    def initial_weights(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(12345 + seed)  # whatever state a caller left behind
        seed_everything(seed)
        return [p.detach().clone() for p in build_network(config, inputs).parameters()]

    first, again, other = initial_weights(3), initial_weights(3), initial_weights(4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_an_eye_store_gives_the_same_fold_as_the_tree_it_was_written_from(
    make_config, tiny_eyes, tmp_path: Path
) -> None:
    from retina_data.cli import main
    from retina_data.tree import write_dataset_info, write_eye

    tree = tmp_path / "tree"
    for eye in tiny_eyes:
        write_eye(tree, eye)
    write_dataset_info(tree, "tree")
    (tree / "cross-validation-folds.yml").write_text("FOLD:\n  0: {TRAIN: [sub002], TEST: [sub001]}\n")
    assert main(["store", str(tree), str(tmp_path / "eyes.zarr")]) == 0
    from_tree = load_fold(make_config(SETTINGS={"IMG_DIR": str(tree), "FOLD": 0}))
    from_store = load_fold(make_config(SETTINGS={"IMG_DIR": str(tmp_path / "eyes.zarr"), "FOLD": 0}))
    for part in ("train_inputs", "test_truth", "test_inputs"):
        tree_eyes, store_eyes = getattr(from_tree, part), getattr(from_store, part)
        assert [eye.eye_id for eye in store_eyes] == [eye.eye_id for eye in tree_eyes]
        for ours, theirs in zip(store_eyes, tree_eyes):
            assert np.array_equal(ours.oct, theirs.oct) and np.array_equal(ours.labels, theirs.labels)
            assert np.array_equal(ours.bscan_positions, theirs.bscan_positions) and ours.spacing == theirs.spacing
    assert [eye.eye_id for eye in from_store.train_inputs] == ["sub002_OD", "sub002_OS"]
    assert tmp_path / "eyes.zarr" / "zarr.json" in from_store.sources


def test_a_store_at_a_url_gives_the_fold_of_the_local_store_and_its_url_in_the_run_identity(
    make_config, tiny_eyes, tmp_path: Path, monkeypatch
) -> None:
    """An fsspec URL as SETTINGS.IMG_DIR (here memory://; its folds file relative to the working
    folder): the same eyes as the local store, streamed or kept, and the run identity names the URL
    (before: a local path made of it, /cwd/memory:/...)."""
    from retina_data.eye_store import write_store

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cross-validation-folds.yml").write_text("FOLD:\n  0: {TRAIN: [sub002], TEST: [sub001]}\n")
    url = "memory://pipeline-test/eyes.zarr"
    write_store(url, tiny_eyes, progress=False)
    write_store(tmp_path / "eyes.zarr", tiny_eyes, progress=False)
    (tmp_path / "eyes.zarr" / "cross-validation-folds.yml").write_text(
        (tmp_path / "cross-validation-folds.yml").read_text()
    )
    for on_device in (True, False):
        remote = make_config(SETTINGS={"IMG_DIR": url, "FOLD": 0}, TRAINING={"DATA_ON_DEVICE": on_device})
        local = make_config(SETTINGS={"IMG_DIR": str(tmp_path / "eyes.zarr"), "FOLD": 0})
        from_url, from_disk = load_fold(remote), load_fold(local)
        assert [eye.eye_id for eye in from_url.train_inputs] == [eye.eye_id for eye in from_disk.train_inputs]
        for ours, theirs in zip(from_url.test_truth, from_disk.test_truth):
            assert np.array_equal(ours.oct, theirs.oct) and np.array_equal(ours.labels, theirs.labels)
        identity = run_identity(remote, "train_test_geninr", from_url)
        assert identity.config["SETTINGS.IMG_DIR"] == url
