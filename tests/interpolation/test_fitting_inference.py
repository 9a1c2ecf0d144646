"""Test-time latent fit of a held-out eye, and chunked dense prediction at any B-scan positions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from anisotropic_interpolation.config import ExperimentConfig
from anisotropic_interpolation.fitting import LatentFitter, shape_batches
from anisotropic_interpolation.inference import densified_positions, predict_volume
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import NetworkTrainer
from retina_data.config import from_dict

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tiny_eyes):
    """A small population network trained on three eyes; the fourth is held out."""
    config = from_dict({
        "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": 4},
        "TRAINING": {"LATENT_CODE": {"SIZE": 8}, "TOTAL_EPOCHS": 8, "EPOCHS_TIL_SUMMARY": 4, "LEARNING_RATE": 0.003,
                     "BATCH_POINTS": 1024, "STEPS_PER_EPOCH": 10, "LOSS_RECON": "MSE"},
        "MODEL": {"NUM_LAYERS": 3, "HIDDEN_SIZE": 32, "ACTIVATION": "SIREN"},
        "TEST": {"TOTAL_EPOCHS": 10, "EPOCHS_TIL_SUMMARY": 5, "BATCH_POINTS": 1024, "STEPS_PER_EPOCH": 5,
                 "NUM_SAMPLES": 2, "LEARNING_RATE": 0.02},
    }, ExperimentConfig)
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    train = [eye.subsample(4) for eye in tiny_eyes[:3]]
    data = SparseVolumes.from_eyes(train, use_labels=True, use_slo=True, slice_scale=1.0, device=CPU)
    NetworkTrainer(network, data, config, None).train()
    return network, config


def _input_mse(network, code: torch.Tensor, eye) -> float:
    prediction = predict_volume(network, code, eye, eye.bscan_positions, device=CPU)
    return float(np.mean((prediction.intensity - eye.oct) ** 2))


def test_latent_fit_improves_the_reconstruction_of_a_held_out_eye(trained, tiny_eyes) -> None:
    network, config = trained
    held_out = tiny_eyes[3].subsample(4)
    before = _input_mse(network, torch.zeros(8), held_out)
    code = LatentFitter(network, config, CPU).fit([held_out], progress=False)[0]
    assert _input_mse(network, code, held_out) < 0.95 * before


def test_latent_fit_with_a_cosine_schedule_decays_the_rate_and_improves_the_reconstruction(
        trained, tiny_eyes, monkeypatch) -> None:
    network, config = trained
    cosine = dataclasses.replace(config, TEST=dataclasses.replace(config.TEST, LR_SCHEDULE="cosine", LR_MIN_FACTOR=0.05))
    rates: list[float] = []
    original_step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(float(self.param_groups[0]["lr"]))
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    held_out = tiny_eyes[3].subsample(4)
    before = _input_mse(network, torch.zeros(8), held_out)
    code = LatentFitter(network, cosine, CPU).fit([held_out], progress=False)[0]
    assert len(rates) == 50 and rates[0] == pytest.approx(0.02)
    assert all(later <= earlier for earlier, later in zip(rates, rates[1:])) and rates[-1] < 0.1 * rates[0]
    assert _input_mse(network, code, held_out) < 0.95 * before


def test_latent_fit_leaves_the_network_unchanged(trained, tiny_eyes) -> None:
    network, config = trained
    before = {k: v.clone() for k, v in network.state_dict().items()}
    LatentFitter(network, config, CPU).fit([tiny_eyes[3].subsample(4)], progress=False)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_eyes_are_batched_by_shape() -> None:
    class Shaped:
        def __init__(self, shape):
            self.shape = shape

    eyes = [Shaped((4, 4, 2)), Shaped((4, 4, 3)), Shaped((4, 4, 2)), Shaped((4, 4, 2))]
    assert shape_batches(eyes, 2) == [[0, 2], [3], [1]]


def test_densified_positions_insert_evenly_spaced_bscans_in_every_gap() -> None:
    assert np.allclose(densified_positions(np.array([0.0, 1.0, 3.0]), 2), [0.0, 0.5, 1.0, 2.0, 3.0])


def test_chunked_prediction_at_k_times_the_bscans_matches_one_chunk(trained, tiny_eyes) -> None:
    network, _ = trained
    eye = tiny_eyes[3].subsample(4)
    positions = densified_positions(eye.bscan_positions, 4)
    code = torch.randn(8) * 0.01
    whole = predict_volume(network, code, eye, positions, device=CPU, memory_budget_mb=4096, probabilities=True,
                           max_chunk_points=10 ** 9)
    chunked = predict_volume(network, code, eye, positions, device=CPU, memory_budget_mb=0.05, probabilities=True)
    assert whole.intensity.shape == (32, 16, 13)
    assert np.allclose(whole.intensity, chunked.intensity, atol=1e-6)
    assert np.array_equal(whole.labels, chunked.labels)
    assert np.allclose(whole.probabilities.astype(np.float32).sum(-1), 1.0, atol=1e-2)


def test_prediction_at_arbitrary_positions_matches_prediction_on_the_grid(trained, tiny_eyes) -> None:
    network, _ = trained
    eye = tiny_eyes[3].subsample(4)
    code = torch.zeros(8)
    grid = predict_volume(network, code, eye, eye.bscan_positions, device=CPU)
    single = predict_volume(network, code, eye, eye.bscan_positions[[2]], device=CPU)
    assert np.allclose(grid.intensity[:, :, 2], single.intensity[:, :, 0], atol=1e-6)


def test_compiled_prediction_with_a_padded_last_chunk_matches_eager(trained, tiny_eyes) -> None:
    network, _ = trained
    eye = tiny_eyes[3].subsample(4)
    positions = densified_positions(eye.bscan_positions, 2)  # 7 B-scans of 32 x 16: 3,584 points
    code = torch.randn(8) * 0.01
    eager = predict_volume(network, code, eye, positions, device=CPU, max_chunk_points=1000)
    compiled = predict_volume(network, code, eye, positions, device=CPU, max_chunk_points=1000, compile_network=True)
    assert np.allclose(eager.intensity, compiled.intensity, atol=1e-5)
    assert np.mean(eager.labels == compiled.labels) > 0.999
