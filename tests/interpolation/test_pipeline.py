"""Experiment flow: data-dependent inputs, run folders, container folds."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anisotropic_interpolation.pipeline import load_fold, network_inputs, run_folder, seed_everything, volumes
from anisotropic_interpolation.model import build_network
from anisotropic_interpolation.training import NetworkTrainer
from retina_data.containers import container_name, write_container


def test_eyes_without_labels_or_slo_drop_the_segmentation_head_and_enface_input(make_config, tiny_eyes,
                                                                                 capsys) -> None:
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
    config = make_config(SETTINGS={"IMG_DIR": str(tmp_path), "FOLD": 1})
    fold = load_fold(config)
    assert [eye.shape[2] for eye in fold.train_inputs] == [4, 4]
    assert [eye.shape[2] for eye in fold.test_truth] == [8, 8]
    assert np.array_equal(fold.test_inputs[0].oct, fold.test_truth[0].oct[:, :, ::2])


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
