"""Time to densify one unseen eye (latent fit + dense prediction), ours against the reference schedule.

Equal quality (reduced B-scan size): a small population network is trained on phantom
eyes of 32 x 32 x 64 (every 4th B-scan, 16 inputs); then one held-out eye is fitted
(a) with the reference schedule: 200 epochs, each one whole B-scan per step over all 16
input B-scans (B-scans drawn in random order), and (b) with ours: random 16 x 16 patches
across the input B-scans, a fixed small number of steps with a convergence check. Both
predict the eye at its 64 dense positions; gap-B-scan PSNR and wall time are compared.

Paper shape (timing only): one eye of 230 x 496 with 16 input B-scans and the paper
network: our fit plus prediction at 31 B-scans (and at 496, timed on 62 and scaled, as the
cost is linear in the number of B-scans); the reference schedule's fit (200 x 16 steps of
one B-scan) is timed over a few steps and extrapolated. Nothing is compiled.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from anisotropic_interpolation.config import ExperimentConfig, load_experiment_config
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.inference import densified_positions, predict_volume
from anisotropic_interpolation.model import ImplicitNetwork, NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import NetworkTrainer
from benchmarks.interpolation_throughput import PAPER_CONFIG
from retina_data.config import from_dict
from retina_data.eye import Eye
from retina_data.phantom import PhantomConfig, make_eye

CPU = torch.device("cpu")
SMALL_SHAPE = (32, 32, 64)
FACTOR = 4


def _small_config(test: dict, patch: int = 16) -> ExperimentConfig:
    """Demo-sized network and training; ``test`` sets the fit schedule, ``patch`` its patch side."""
    return from_dict({
        "SETTINGS": {"COMPILE": False},
        "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": FACTOR},
        "TRAINING": {"LATENT_CODE": {"SIZE": 32}, "TOTAL_EPOCHS": 20, "EPOCHS_TIL_SUMMARY": 10,
                     "LEARNING_RATE": 0.002, "BATCH_POINTS": 4096, "STEPS_PER_EPOCH": 10, "LR_SCHEDULE": "cosine",
                     "PATCH_SIZE": patch},
        "MODEL": {"NUM_LAYERS": 4, "HIDDEN_SIZE": 64, "ACTIVATION": "SIREN"},
        "TEST": {"EPOCHS_TIL_SUMMARY": 10, "LEARNING_RATE": 0.01, **test},
    }, ExperimentConfig)


def _trained_population() -> tuple[ImplicitNetwork, Eye]:
    cfg = PhantomConfig(n_subjects=4, shape=SMALL_SHAPE)
    eyes = [make_eye(cfg, s, lat) for s in range(4) for lat in ("OD", "OS")]
    config = _small_config({})
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=32, num_classes=13))
    data = SparseVolumes.from_eyes([e.subsample(FACTOR) for e in eyes[:-1]], use_labels=True, use_slo=True,
                                   slice_scale=1.0, device=CPU)
    NetworkTrainer(network, data, config, None).train()
    return network, eyes[-1]


def _gap_psnr(network: ImplicitNetwork, code: torch.Tensor, truth: Eye) -> float:
    sparse = truth.subsample(FACTOR)
    prediction = predict_volume(network, code, sparse, truth.bscan_positions, device=CPU)
    gap = np.ones(truth.shape[2], bool)
    gap[::FACTOR] = False
    error = np.mean((prediction.intensity[:, :, gap] - truth.oct[:, :, gap]) ** 2)
    return float(10 * np.log10(1.0 / error))


def _timed_fit(network: ImplicitNetwork, truth: Eye, test: dict, patch: int) -> tuple[float, float]:
    config = _small_config(test, patch)
    started = time.perf_counter()
    code = LatentFitter(network, config, CPU).fit([truth.subsample(FACTOR)], progress=False)[0]
    predict_volume(network, code, truth.subsample(FACTOR), truth.bscan_positions, device=CPU)
    return time.perf_counter() - started, _gap_psnr(network, code, truth)


REFERENCE_SCHEDULE = {"TOTAL_EPOCHS": 200, "BATCH_POINTS": SMALL_SHAPE[0] * SMALL_SHAPE[1],
                      "STEPS_PER_EPOCH": 16}
OUR_SCHEDULE = {"TOTAL_EPOCHS": 40, "BATCH_POINTS": 4096, "STEPS_PER_EPOCH": 1, "CONVERGENCE_TOL": 0.01}


def equal_quality() -> dict[str, float]:
    """Wall time and gap PSNR of both schedules on the reduced-size eye."""
    network, truth = _trained_population()
    reference_s, reference_psnr = _timed_fit(network, truth, {**REFERENCE_SCHEDULE, "NUM_SAMPLES": 1},
                                             patch=SMALL_SHAPE[1])  # one whole (square) B-scan per step
    ours_s, ours_psnr = _timed_fit(network, truth, {**OUR_SCHEDULE, "NUM_SAMPLES": 1}, patch=16)
    return {"reference_s": reference_s, "reference_gap_psnr": reference_psnr,
            "ours_s": ours_s, "ours_gap_psnr": ours_psnr}


def paper_shape_timing(reference_steps: int = 2) -> dict[str, float]:
    """Our densification of a paper-shaped eye, and the reference fit extrapolated from a few steps."""
    schedule = {**OUR_SCHEDULE, "BATCH_POINTS": 16384}
    config = load_experiment_config(PAPER_CONFIG, [f"TEST.{k}={v}" for k, v in schedule.items()]
                                    + ["SETTINGS.COMPILE=false"])
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=128, num_classes=13))
    rng = np.random.default_rng(0)
    height, width, inputs = 230, 496, 16
    eye = Eye(oct=rng.random((height, width, inputs), dtype=np.float32), spacing=(0.0039, 0.012, 0.384),
              subject="bench", slo=rng.random((width, 496), dtype=np.float32),
              bscan_positions=np.arange(inputs) * 0.384, slo_positions=np.linspace(0, 15 * 0.384, 496))
    results: dict[str, float] = {}
    started = time.perf_counter()
    code = LatentFitter(network, config, CPU).fit([eye], progress=False)[0]
    results["ours_fit_s"] = time.perf_counter() - started
    started = time.perf_counter()
    predict_volume(network, code, eye, densified_positions(eye.bscan_positions, 2), device=CPU)
    results["ours_predict_31_s"] = time.perf_counter() - started
    dense = np.linspace(eye.bscan_positions[0], eye.bscan_positions[-1], 496)
    started = time.perf_counter()
    predict_volume(network, code, eye, dense[:62], device=CPU)  # cost is linear in the B-scan count
    results["ours_predict_496_s_extrapolated"] = (time.perf_counter() - started) * 496 / 62
    reference = _reference_fit_step_seconds(network, eye, reference_steps)
    results["reference_fit_s_extrapolated"] = reference * 200 * inputs
    return results


def _reference_fit_step_seconds(network: ImplicitNetwork, eye: Eye, steps: int) -> float:
    """Seconds per reference latent-fit step: one whole B-scan (tiled code), code-only Adam."""
    from benchmarks.reference_step import ReferenceResMLP

    height, width, _ = eye.shape
    reference = ReferenceResMLP(3 + 1 + 128)
    reference.requires_grad_(False)
    code = torch.nn.Parameter(torch.zeros(128))
    optimizer = torch.optim.Adam([code], lr=1e-3)
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    plane = torch.stack([rows, cols], -1).reshape(-1, 2)
    truth = torch.as_tensor(eye.oct[:, :, 0]).reshape(-1)
    slo = torch.as_tensor(eye.slo[:, 0]).repeat(height)[:, None]

    def step() -> None:
        inputs = torch.cat([plane, torch.zeros(plane.shape[0], 1), slo, code.expand(plane.shape[0], -1)], -1)
        loss = (torch.sigmoid(reference(inputs)[:, 0]) - truth).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps
