"""Training throughput (points/s) of our step against the reference's one-B-scan-per-step step.

Both train the paper network (residual MLP, coordinates to all layers, WIRE, 6 x 128,
latent 128, SLO input, 13 classes, MSE + SSIM + CE) on the same random paper-shaped
data (B-scans of 230 x 496, 16 per eye). Ours draws 65,536 points per step as 16 x 16
patches across eyes and B-scans and projects the code once per eye; optionally the whole
update (forward, backward, Adam step) is compiled with ``torch.compile``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from anisotropic_interpolation.config import load_experiment_config
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import NetworkTrainer
from benchmarks.reference_step import ReferenceTrainer

PAPER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "interpolation" / "geninr_config.yaml"
BSCAN = (230, 496)
EYES, SLICES = 4, 16


def paper_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random volumes ``[E, H, W, S]``, labels and SLO ``[E, W, S]`` of paper shape."""
    generator = torch.Generator().manual_seed(seed)
    volumes = torch.rand(EYES, *BSCAN, SLICES, generator=generator)
    labels = torch.randint(13, (EYES, *BSCAN, SLICES), generator=generator, dtype=torch.uint8)
    slo = torch.rand(EYES, BSCAN[1], SLICES, generator=generator)
    return volumes, labels, slo


def _rate(step: Callable[[], object], points: int, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return points * repeats / (time.perf_counter() - started)


def reference_rate(repeats: int = 2) -> float:
    """Points/s of the reference-style step (one whole B-scan per step)."""
    volumes, labels, slo = paper_data()
    trainer = ReferenceTrainer(volumes, labels, slo)
    counter = iter(range(10 ** 6))

    def step() -> float:
        i = next(counter)
        return trainer.step(i % EYES, i % SLICES)

    return _rate(step, trainer.points_per_step, warmup=1, repeats=repeats)


def our_rate(compile_step: bool, repeats: int = 3) -> float:
    """Points/s of :class:`NetworkTrainer`'s step on the paper config (``torch.compile`` optional)."""
    config = load_experiment_config(PAPER_CONFIG, [f"SETTINGS.COMPILE={str(compile_step).lower()}"])
    volumes, labels, slo = paper_data()
    slices = torch.linspace(-1, 1, SLICES).expand(EYES, SLICES).contiguous()
    data = SparseVolumes(volumes, labels, slo, slices)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=128, num_classes=13))
    trainer = NetworkTrainer(network, data, config, None)
    return _rate(trainer.step, trainer.plan.points, warmup=2 if compile_step else 1, repeats=repeats)


def run(compile_step: bool = True) -> dict[str, float]:
    """All rates (points/s) and the ratios against the reference."""
    results = {"reference": reference_rate(), "ours_eager": our_rate(False)}
    if compile_step:
        results["ours_compiled"] = our_rate(True)
    return results
