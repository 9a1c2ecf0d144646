"""Devices and mixed precision: fp32 on the CPU; the bf16 autocast path that CUDA runs, exercised on the CPU.

CUDA GPUs with native bf16 train, fit and predict under ``torch.autocast(dtype=bfloat16)``.
No GPU is needed to find dtype mistakes in that path: the tests below switch the same
autocast on for the CPU (``mixed_precision_dtype`` patched) and check that every
backbone/activation/encoding trains, that the latent fit works and that bf16 predictions
agree with fp32 ones.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_configs import tiny_trainer

import anisotropic_interpolation.training as training
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.inference import predict_volume
from anisotropic_interpolation.losses import reconstruction_loss
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.pipeline import precision_notice, select_device
from anisotropic_interpolation.training import autocast_context, mixed_precision_dtype
from retina_data.errors import ConfigError

CPU = torch.device("cpu")
CASES = {  # name: (MODEL keys, POS_ENCODING keys, TRAINING keys)
    "siren": ({"ACTIVATION": "SIREN"}, {}, {}),
    "wire": ({"ACTIVATION": "WIRE"}, {}, {}),
    "finer": ({"ACTIVATION": "FINER"}, {}, {}),
    "relu_fourier": (
        {"ACTIVATION": "RELU"},
        {"TYPE": "FF", "FF": {"MAPPING_SIZE": 8, "SCALE": 1.0, "FACTOR": 1.0}},
        {},
    ),
    "siren_hashgrid": (
        {"ACTIVATION": "SIREN"},
        {
            "TYPE": "Hashgrid",
            "HASHGRID": {
                "N_LEVELS": 4,
                "N_FEATURES_PER_LEVEL": 2,
                "LOG2_HASHMAP_SIZE": 8,
                "BASE_RESOLUTION": 4,
                "FINEST_RESOLUTION": 32,
            },
        },
        {},
    ),
    "film_siren": (
        {"ACTIVATION": "SIREN", "MODULATION": True, "SKIP_CONNECTION": False, "INPUT_COORD_TO_ALL_LAYERS": False},
        {},
        {},
    ),
    "plain_mlp_dropout": (
        {"ACTIVATION": "WIRE", "SKIP_CONNECTION": False, "INPUT_COORD_TO_ALL_LAYERS": False, "DROPOUT": 0.1},
        {},
        {},
    ),
    "wire_mse_ssim": ({"ACTIVATION": "WIRE"}, {}, {"LOSS_RECON": "Combi", "PATCH_SIZE": 8}),
}


@pytest.fixture
def bf16_on_cpu(monkeypatch) -> None:
    """Mixed precision on the CPU as it runs on a bf16 GPU."""
    monkeypatch.setattr(training, "mixed_precision_dtype", lambda device: torch.bfloat16)


def test_the_cpu_computes_in_fp32() -> None:
    assert mixed_precision_dtype(CPU) is None
    layer = torch.nn.Linear(4, 4)
    with autocast_context(CPU, True):
        assert layer(torch.ones(2, 4)).dtype == torch.float32


@pytest.mark.usefixtures("bf16_on_cpu")
@pytest.mark.parametrize("case", CASES)
def test_training_under_bf16_autocast_lowers_the_loss_and_keeps_fp32_weights(make_config, tiny_eyes, case) -> None:
    model, encoding, training = CASES[case]
    config = make_config(MODEL=model, POS_ENCODING=encoding, TRAINING={"TOTAL_EPOCHS": 6, **training})
    trainer = tiny_trainer(config, tiny_eyes[:3])
    network = trainer.network
    outcome = trainer.train()
    assert np.isfinite(outcome.history[-1]["loss"])
    assert outcome.history[-1]["loss"] < outcome.history[0]["loss"]
    assert all(p.dtype == torch.float32 for p in network.parameters())
    assert trainer.codes.dtype == torch.float32


@pytest.mark.usefixtures("bf16_on_cpu")
def test_latent_fit_under_bf16_autocast_improves_the_held_out_reconstruction(make_config, tiny_eyes) -> None:
    # the code into every layer (ours): a lever large enough for 8 epochs of a tiny network
    # and our patch training with its light code penalty (the reference's mean(z²) of weight 1 keeps codes small)
    config = make_config(
        TRAINING={
            "TOTAL_EPOCHS": 8,
            "SAMPLING": "patches",
            "LOSS_SEG": "CE",
            "LATENT_CODE": {"SIZE": 8, "REG_WEIGHT": 1e-4, "REG_TYPE": "all_codes_squared_norm"},
        },
        TEST={"TOTAL_EPOCHS": 8},
        MODEL={"LATENT_TO_ALL_LAYERS": True},
    )
    trainer = tiny_trainer(config, tiny_eyes[:3])
    network = trainer.network
    trainer.train()
    held_out = tiny_eyes[3].subsample(4)

    def input_mse(code: torch.Tensor) -> float:
        prediction = predict_volume(network, code, held_out, held_out.bscan_positions, device=CPU)
        return float(np.mean((prediction.intensity - held_out.oct) ** 2))

    code = LatentFitter(network, config, CPU).fit([held_out], progress=False)[0]
    assert code.dtype == torch.float32
    assert input_mse(code) < 0.95 * input_mse(torch.zeros(8))


def test_bf16_prediction_agrees_with_fp32(make_config, tiny_eyes, monkeypatch) -> None:
    config = make_config(TRAINING={"TOTAL_EPOCHS": 8})
    trainer = tiny_trainer(config, tiny_eyes[:3])
    network = trainer.network
    trainer.train()
    eye = tiny_eyes[0].subsample(4)
    positions = np.linspace(eye.bscan_positions[0], eye.bscan_positions[-1], 9)

    def predict(mixed_precision: bool):
        return predict_volume(
            network, trainer.codes[0], eye, positions, device=CPU, probabilities=True, mixed_precision=mixed_precision
        )

    monkeypatch.setattr(training, "mixed_precision_dtype", lambda device: torch.bfloat16)
    half, switched_off = predict(True), predict(False)
    monkeypatch.undo()
    full = predict(True)
    assert np.array_equal(switched_off.intensity, full.intensity)
    assert half.intensity.dtype == np.float32 and half.labels.dtype == np.uint8
    assert not np.array_equal(half.intensity, full.intensity)  # bf16 really ran
    assert np.abs(half.intensity - full.intensity).max() < 0.02
    assert np.mean(half.labels == full.labels) > 0.97
    assert np.allclose(half.probabilities.astype(np.float32).sum(-1), 1.0, atol=1e-2)


@pytest.mark.parametrize(
    ("capability", "mixed_precision", "noticed"), [((7, 0), True, True), ((9, 0), True, False), ((7, 0), False, False)]
)
def test_a_gpu_without_native_bf16_runs_in_fp32_with_a_notice(
    make_config, monkeypatch, capsys, capability, mixed_precision, noticed
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    monkeypatch.setattr(torch.version, "hip", None)
    gpu = torch.device("cuda", 0)
    assert mixed_precision_dtype(gpu) == (torch.bfloat16 if capability >= (8, 0) else None)
    precision_notice(gpu, make_config(TRAINING={"MIXED_PRECISION": mixed_precision}))
    message = capsys.readouterr().err
    assert ("Tesla V100 has no native bf16" in message and "fp32" in message) is noticed
    precision_notice(CPU, make_config())
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["MSE", "SSIM", "Combi"])
def test_reconstruction_losses_under_bf16_autocast_equal_their_fp32_values(kind) -> None:
    """SSIM's local variances are differences of nearly equal means: bf16 would get them wrong."""
    generator = torch.Generator().manual_seed(0)
    truth = 0.5 + 0.1 * torch.rand(32, 16, 16, generator=generator)
    prediction = truth + 0.02 * torch.randn(32, 16, 16, generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = reconstruction_loss(prediction, truth, kind)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, reconstruction_loss(prediction, truth, kind), rtol=1e-5)


def test_gpu_selection_makes_the_chosen_gpu_current_and_refuses_a_missing_one(monkeypatch) -> None:
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert select_device(1) == torch.device("cuda", 1) and chosen == [1]
    assert select_device(-1) == CPU and chosen == [1]
    with pytest.raises(ConfigError, match="--gpu 2: only 2 CUDA device"):
        select_device(2)


@pytest.mark.parametrize("encoding", ["FF", "Hashgrid"])
def test_encodings_under_bf16_autocast_equal_their_fp32_values(make_config, encoding) -> None:
    """Fourier phases reach tens of radians: computed in bf16 they would be off by ~0.1 rad."""
    settings = {
        "FF": {"FF": {"MAPPING_SIZE": 16, "SCALE": 10.0, "FACTOR": 1.0}},
        "Hashgrid": dict(CASES["siren_hashgrid"][1]),
    }[encoding]
    settings.pop("TYPE", None)
    config = make_config(POS_ENCODING={"TYPE": encoding, **settings})
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=False, latent_size=0, num_classes=0))
    coords = torch.rand(512, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    encode = network.backbone.encoding
    full = encode(coords)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = encode(coords)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, full)
