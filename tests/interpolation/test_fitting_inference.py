"""Test-time latent fit of a held-out eye, and chunked dense prediction at any B-scan positions."""

from __future__ import annotations

import dataclasses
import itertools

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
    """A small population network trained on three eyes (our patch training: quick to learn);
    the fourth is held out. The test-time fit keeps the reference's defaults."""
    config = from_dict(
        {
            "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": 4, "SLICE_COORD_SCALE": 1.0},  # as trained and predicted here
            "TRAINING": {
                "LATENT_CODE": {"SIZE": 8, "REG_WEIGHT": 1e-4, "REG_TYPE": "all_codes_squared_norm"},
                "TOTAL_EPOCHS": 8,
                "EPOCHS_TIL_SUMMARY": 4,
                "LEARNING_RATE": 0.003,
                "BATCH_POINTS": 1024,
                "STEPS_PER_EPOCH": 10,
                "LOSS_RECON": "MSE",
                "SAMPLING": "patches",
                "LOSS_SEG": "CE",
                "LR_SCHEDULE": "constant",
            },
            "MODEL": {"NUM_LAYERS": 3, "HIDDEN_SIZE": 32, "ACTIVATION": "SIREN"},
            "TEST": {
                "TOTAL_EPOCHS": 10,
                "EPOCHS_TIL_SUMMARY": 5,
                "BATCH_POINTS": 1024,
                "STEPS_PER_EPOCH": 5,
                "NUM_SAMPLES": 2,
                "LEARNING_RATE": 0.02,
            },
        },
        ExperimentConfig,
    )
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
    assert _input_mse(network, code, held_out) < 0.98 * before  # the code enters the first layer only: a small lever


def test_latent_fit_with_a_cosine_schedule_decays_the_rate_and_improves_the_reconstruction(
    trained, tiny_eyes, monkeypatch
) -> None:
    network, config = trained
    cosine = dataclasses.replace(
        config, TEST=dataclasses.replace(config.TEST, LR_SCHEDULE="cosine", LR_MIN_FACTOR=0.05)
    )
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
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates)) and rates[-1] < 0.1 * rates[0]
    assert _input_mse(network, code, held_out) < 0.98 * before


def test_latent_fit_leaves_the_network_unchanged(trained, tiny_eyes) -> None:
    network, config = trained
    before = {k: v.clone() for k, v in network.state_dict().items()}
    LatentFitter(network, config, CPU).fit([tiny_eyes[3].subsample(4)], progress=False)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def _fit(network, config, eyes, **test) -> tuple[torch.Tensor, LatentFitter]:
    """Codes fitted with ``TEST`` keys replaced, from the same seeded initial codes."""
    changed = dataclasses.replace(config, TEST=dataclasses.replace(config.TEST, **test))
    torch.manual_seed(0)
    fitter = LatentFitter(network, changed, CPU)
    return fitter.fit(eyes, progress=False), fitter


def test_latent_fit_returns_each_eyes_code_of_its_lowest_loss_epoch(trained, tiny_eyes) -> None:
    """A rate large enough that the loss goes up and down: KEEP best returns, for each eye, the code
    the fit held after its lowest-loss epoch, i.e. the last code of a fit stopped after that epoch."""
    network, config = trained
    eyes = [eye.subsample(4) for eye in tiny_eyes[2:]]
    best, fitter = _fit(network, config, eyes, KEEP="best", LEARNING_RATE=0.5, TOTAL_EPOCHS=8)
    losses = fitter.epoch_losses[0]  # [epochs, eyes]
    best_epochs = (losses.argmin(0) + 1).tolist()
    assert any(epoch < 8 for epoch in best_epochs)  # a later epoch was worse: best is not last
    last, _ = _fit(network, config, eyes, KEEP="last", LEARNING_RATE=0.5, TOTAL_EPOCHS=8)
    for eye, epoch in enumerate(best_epochs):
        stopped, _ = _fit(network, config, eyes, KEEP="last", LEARNING_RATE=0.5, TOTAL_EPOCHS=epoch)
        assert torch.equal(best[eye], stopped[eye])
        assert epoch == 8 or not torch.equal(best[eye], last[eye])


def test_latent_fit_of_whole_bscans_visits_every_input_bscan_of_every_eye_per_epoch(
    trained, tiny_eyes, monkeypatch
) -> None:
    network, config = trained
    eyes = [eye.subsample(4) for eye in tiny_eyes[2:]]
    steps: list[list[tuple[int, int]]] = []
    original = SparseVolumes.bscans

    def recording_bscans(self, eye, bscan):
        steps.append(list(zip(eye.tolist(), bscan.tolist())))
        return original(self, eye, bscan)

    monkeypatch.setattr(SparseVolumes, "bscans", recording_bscans)
    _, fitter = _fit(network, config, eyes, SAMPLING="bscan", STEPS_PER_EPOCH=None, TOTAL_EPOCHS=2)
    assert len(steps) == 2 * 4 and all(sorted(e for e, _ in step) == [0, 1] for step in steps)  # every eye each step
    for epoch in (steps[:4], steps[4:]):
        assert sorted(pair for step in epoch for pair in step) == [(e, s) for e in range(2) for s in range(4)]
    assert fitter.epoch_losses[0].shape == (2, 2) and torch.isfinite(fitter.epoch_losses[0]).all()


def test_latent_fit_optimises_only_the_code_not_a_hash_grid(tiny_eyes) -> None:
    """The reference left the hash-grid tables in the test-time optimiser; here the network is frozen."""
    config = from_dict(
        {
            "TRAINING": {"LATENT_CODE": {"SIZE": 4}, "LOSS_RECON": "MSE"},
            "MODEL": {"NUM_LAYERS": 2, "HIDDEN_SIZE": 16, "ACTIVATION": "RELU"},
            "POS_ENCODING": {
                "TYPE": "Hashgrid",
                "HASHGRID": {"N_LEVELS": 2, "LOG2_HASHMAP_SIZE": 8, "BASE_RESOLUTION": 4, "FINEST_RESOLUTION": 8},
            },
            "TEST": {"TOTAL_EPOCHS": 2, "STEPS_PER_EPOCH": 2, "LEARNING_RATE": 0.1},
        },
        ExperimentConfig,
    )
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=4, num_classes=0))
    before = {k: v.clone() for k, v in network.state_dict().items()}
    optimised = []
    original_init = torch.optim.Adam.__init__

    def recording_init(self, params, *args, **kwargs):
        params = list(params)
        optimised.append(params)
        original_init(self, params, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.Adam, "__init__", recording_init)
        codes = LatentFitter(network, config, CPU).fit([tiny_eyes[0].subsample(4)], progress=False)
    assert [[tuple(p.shape) for p in params] for params in optimised] == [[(1, 4)]]
    assert codes.abs().sum() > 0
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
    whole = predict_volume(
        network, code, eye, positions, device=CPU, memory_budget_mb=4096, probabilities=True, max_chunk_points=10**9
    )
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
