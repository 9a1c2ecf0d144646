"""Time to densify one unseen eye (latent fit + dense prediction), ours against the reference schedule.

Everything uses the paper network (residual MLP, coordinates to all layers, WIRE 6 x 128,
latent 128, SLO input, 13 classes), trained briefly as a population on seven phantom eyes
of reduced B-scan size (64 x 64, 61 B-scans, every 4th = 16 inputs).

Equal quality (reduced B-scan size, since the reference schedule takes hours at paper size
on 2 CPU cores): the held-out eye's code is fitted

- with the reference schedule (the TEST section of ``geninr_config.yaml``): 200 epochs, each
  visiting the 16 input B-scans once in random order, one whole B-scan per step, Adam at
  0.001 decayed by 0.99 per epoch, initial code std 0.0001, the code of the lowest-loss epoch
  kept; run on our network implementation, which is faster per point than the reference's,
  so the speed-up is understated;
- with ours (the TEST section of ``geninr_fast.yaml``): 100 steps of 8,192 points in random
  16 x 16 patches across the input B-scans, learning rate 0.01 with a cosine decay to 0.0001,
  the last code kept.

Both fits use the paper config's loss (5 Combi with the whole-image 11 x 11 Gaussian SSIM,
mean(code²)), so only the schedule differs.

Both then predict the eye at its 61 B-scan positions; the gap PSNR (45 B-scans never seen)
and the wall time of fit + prediction are compared, with the gap PSNR of the initial code
to show that the fit matters. The reference schedule's time on the reference's own step
(the re-creation of :mod:`benchmarks.reference_step`: the code tiled onto every point, the
same function as ours) is also given, timed over 10 steps and scaled to its 3,200 (plus our
prediction time). Three held-out eyes: the population's eighth eye (on which
the schedule was chosen) and two eyes of subjects the population never saw.

Paper shape (timing): a phantom eye of 230 x 496 with 31 B-scans (every 2nd = 16 inputs):
our fit with the same schedule, prediction at 31 and at 496 B-scans (measured, not
extrapolated); the reference schedule's fit (200 x 16 steps of one 230 x 496 B-scan, code
tiled onto every point) is timed over a few steps of the reference re-creation and scaled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypedDict

import numpy as np
import torch

from anisotropic_interpolation.config import ExperimentConfig, load_experiment_config
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.inference import predict_volume
from anisotropic_interpolation.model import ImplicitNetwork, NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import NetworkTrainer
from benchmarks.interpolation_throughput import PAPER_CONFIG
from benchmarks.reference_step import RECON_WEIGHT, ReferenceNetwork, reference_recon
from retina_data.eye import Eye
from retina_data.phantom import PhantomConfig, make_eye

CPU = torch.device("cpu")
SMALL_SHAPE = (64, 64, 61)
SMALL_FACTOR = 4
PAPER_SHAPE = (230, 496, 31)
PAPER_FACTOR = 2
DENSE_BSCANS = 496

POPULATION = {
    "TOTAL_EPOCHS": 60,
    "STEPS_PER_EPOCH": 10,
    "BATCH_POINTS": 8192,
    "LEARNING_RATE": 0.001,
    "LR_SCHEDULE": "cosine",
    "EPOCHS_TIL_SUMMARY": 10,
    "SAMPLING": "patches",
    "EARLY_STOPPING_PATIENCE": 0,
}
"""The brief population training that gives the fits a network (patches, a fixed budget)."""
REFERENCE_EPOCHS = 200
"""TEST.TOTAL_EPOCHS of the reference's test-time fit (one step per input B-scan each)."""
REFERENCE_SCHEDULE: dict[str, object] = {
    "TOTAL_EPOCHS": REFERENCE_EPOCHS,
    "EPOCHS_TIL_SUMMARY": 50,
    "LEARNING_RATE": 0.001,
    "SAMPLING": "bscan",
    "STEPS_PER_EPOCH": None,
    "LR_SCHEDULE": "exponential",
    "LR_GAMMA": 0.99,
    "KEEP": "best",
    "CONVERGENCE_TOL": 0.0,
}
"""The reference's test-time fit: the TEST section of geninr_config.yaml, written out."""
OUR_SCHEDULE = {
    "TOTAL_EPOCHS": 100,
    "EPOCHS_TIL_SUMMARY": 50,
    "LEARNING_RATE": 0.01,
    "SAMPLING": "patches",
    "BATCH_POINTS": 8192,
    "STEPS_PER_EPOCH": 1,
    "LR_SCHEDULE": "cosine",
    "LR_MIN_FACTOR": 0.01,
    "KEEP": "last",
    "CONVERGENCE_TOL": 0.0,
}
"""Our short fit: the TEST section of geninr_fast.yaml, written out."""


EXTRA_HELD_OUT = ((4, "OD"), (5, "OS"))
"""Eyes of subjects 5 and 6 of a larger phantom, which the population never saw."""


def _config(training: dict | None = None, test: dict | None = None) -> ExperimentConfig:
    """The paper config with ``TRAINING.*`` / ``TEST.*`` overrides; nothing compiled during fits."""

    def value_text(value: object) -> str:
        return "null" if value is None else str(value)

    overrides = ["SETTINGS.COMPILE=false"]
    overrides += [f"TRAINING.{key}={value_text(value)}" for key, value in (training or {}).items()]
    overrides += [f"TEST.{key}={value_text(value)}" for key, value in (test or {}).items()]
    return load_experiment_config(PAPER_CONFIG, overrides)


def _network(config: ExperimentConfig) -> ImplicitNetwork:
    torch.manual_seed(0)
    return build_network(config, NetworkInputs(use_slo=True, latent_size=128, num_classes=13))


def trained_population(shape: tuple[int, int, int] = SMALL_SHAPE) -> tuple[ImplicitNetwork, Eye]:
    """The paper network trained on seven reduced-size phantom eyes, and the held-out eighth."""
    phantom = PhantomConfig(n_subjects=4, shape=shape)
    eyes = [make_eye(phantom, subject, side) for subject in range(4) for side in ("OD", "OS")]
    network = _network(_config(POPULATION))
    data = SparseVolumes.from_eyes(
        [eye.subsample(SMALL_FACTOR) for eye in eyes[:-1]], use_labels=True, use_slo=True, slice_scale=1.0, device=CPU
    )
    NetworkTrainer(network, data, _config(POPULATION), None, progress=False).train()
    return network, eyes[-1]


def gap_psnr(prediction: np.ndarray, truth: Eye, factor: int) -> float:
    """PSNR (dB, data range 1) over the B-scans that were not input."""
    gap = np.ones(truth.shape[2], bool)
    gap[::factor] = False
    error = float(np.mean((prediction[:, :, gap] - truth.oct[:, :, gap]) ** 2))
    return 10 * np.log10(1.0 / error)


def timed_densify(network: ImplicitNetwork, truth: Eye, config: ExperimentConfig, factor: int) -> dict[str, float]:
    """Fit the code of ``truth``'s input B-scans, predict all its B-scans; seconds and gap PSNR."""
    sparse = truth.subsample(factor)
    fitter = LatentFitter(network, config, CPU)
    started = time.perf_counter()
    code = fitter.fit([sparse], progress=False)[0]
    fitted = time.perf_counter()
    prediction = predict_volume(network, code, sparse, truth.bscan_positions, device=CPU)
    done = time.perf_counter()
    return {
        "fit_s": fitted - started,
        "predict_s": done - fitted,
        "total_s": done - started,
        "epochs": float(fitter.epochs_run[-1]),
        "gap_psnr": gap_psnr(prediction.intensity, truth, factor),
    }


def reference_fit_step_seconds(eye: Eye, steps: int = 2) -> float:
    """Seconds per latent-fit step of the reference re-creation: one whole B-scan, the code
    tiled onto every point, the network frozen, Adam on the code, ``5 Combi + mean(code²)``."""
    height, width, _ = eye.shape
    reference = ReferenceNetwork(128)
    reference.requires_grad_(False)
    code = torch.nn.Parameter(torch.zeros(128))
    optimizer = torch.optim.Adam([code], lr=1e-3)
    rows, cols = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    plane = torch.stack([rows, cols], -1).reshape(-1, 2)
    truth = torch.as_tensor(eye.oct[:, :, 0])
    slo = torch.as_tensor(eye.slo_at(eye.bscan_positions[:1])[:, 0]).repeat(height)[:, None]
    points = torch.cat([plane, torch.zeros(plane.shape[0], 1), slo], -1)

    def step() -> None:
        intensity, _ = reference(points, code)
        loss = RECON_WEIGHT * reference_recon(intensity.view(height, width), truth) + (code**2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return _seconds_per_call(step, steps)


def _seconds_per_call(function: Callable[[], object], repeats: int) -> float:
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def paper_shape_timing(network: ImplicitNetwork) -> dict[str, float]:
    """Our densification of a paper-shaped phantom eye with ``network``; the reference fit scaled."""
    truth = make_eye(PhantomConfig(n_subjects=1, shape=PAPER_SHAPE), 0, "OD")
    sparse = truth.subsample(PAPER_FACTOR)
    results = timed_densify(network, truth, _config(test=OUR_SCHEDULE), PAPER_FACTOR)
    dense = np.linspace(sparse.bscan_positions[0], sparse.bscan_positions[-1], DENSE_BSCANS)
    code = torch.zeros(128)
    started = time.perf_counter()
    predict_volume(network, code, sparse, dense, device=CPU)  # 56.6 M points: compiled (see inference.py)
    results["predict_496_s"] = time.perf_counter() - started
    results["reference_fit_s"] = reference_fit_step_seconds(sparse) * REFERENCE_EPOCHS * sparse.shape[2]
    return results


def held_out_eyes(first: Eye) -> list[Eye]:
    """The population's held-out eye and two eyes of subjects it never saw."""
    phantom = PhantomConfig(n_subjects=6, shape=SMALL_SHAPE)
    return [first, *(make_eye(phantom, subject, side) for subject, side in EXTRA_HELD_OUT)]


class EqualQuality(TypedDict):
    """Both schedules on one held-out eye: each schedule's :func:`timed_densify` row, the reference
    schedule's seconds on the reference's own step, the initial code's gap PSNR (dB)."""

    eye: str
    reference: dict[str, float]
    ours: dict[str, float]
    reference_implementation_s: float
    initial_gap_psnr: float


class DensifyResults(TypedDict):
    """:func:`run`: the equal-quality rows of the held-out eyes, the paper-shape timings (seconds)."""

    eyes: list[EqualQuality]
    paper: dict[str, float]


def run() -> DensifyResults:
    """Both parts; the paper-shape part uses the population network of the equal-quality part."""
    network, truth = trained_population()
    return {"eyes": [equal_quality(network, eye) for eye in held_out_eyes(truth)], "paper": paper_shape_timing(network)}


def equal_quality(network: ImplicitNetwork, truth: Eye) -> EqualQuality:
    """Both schedules on one held-out reduced-size eye, and the initial code's gap PSNR."""
    sparse = truth.subsample(SMALL_FACTOR)
    initial = predict_volume(network, torch.zeros(128), sparse, truth.bscan_positions, device=CPU)
    reference = timed_densify(network, truth, _config(test=REFERENCE_SCHEDULE), SMALL_FACTOR)
    ours = timed_densify(network, truth, _config(test=OUR_SCHEDULE), SMALL_FACTOR)
    steps = REFERENCE_EPOCHS * sparse.shape[2]  # one step per input B-scan
    implementation = reference_fit_step_seconds(sparse, steps=10) * steps + reference["predict_s"]
    return {
        "eye": truth.eye_id,
        "reference": reference,
        "ours": ours,
        "reference_implementation_s": implementation,
        "initial_gap_psnr": gap_psnr(initial.intensity, truth, SMALL_FACTOR),
    }


def equal_quality_larger(side: int = 128) -> EqualQuality:
    """The equal-quality comparison on one held-out eye of ``side x side`` B-scans (its own population):
    the reference schedule's cost grows with the B-scan's pixels, ours does not."""
    network, truth = trained_population((side, side, SMALL_SHAPE[2]))
    return equal_quality(network, truth)
