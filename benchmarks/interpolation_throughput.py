"""Training throughput (points/s): the reference's step against ours in paper mode and in fast mode.

All train on the same random paper-shaped data (B-scans of 230 x 496, 16 per eye, SLO input,
13 classes):

- ``reference``: the faithful re-creation of the reference's step
  (:class:`benchmarks.reference_step.ReferenceTrainer`): one whole B-scan of one eye per
  step, the code tiled onto the first layer, WIRE with two linear maps, Combi 0.1 with the
  whole-B-scan Gaussian SSIM, BCE of the softmax, ``mean(code²)``, fp32;
- ``paper``: our :class:`NetworkTrainer` on ``geninr_config.yaml``: the same network, loss
  and update (one whole B-scan per step), computed in one pass with the code projected once
  per eye;
- ``fast``: our trainer on ``geninr_fast.yaml``: 65,536 points per step in 16 x 16 patches
  across eyes, one shared WIRE linear map, the code into every layer, CE, our SSIM window.

Each ours step is timed eager and, optionally, with ``torch.compile`` of the micro-batch's
forward and backward passes and the Adam step. On a CUDA device ours runs as a training run
would there (whole batches, bf16 autocast where the GPU has native bf16); the reference
step stays in fp32, as the reference code trains.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from anisotropic_interpolation.config import load_experiment_config
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import NetworkTrainer
from benchmarks.reference_step import ReferenceTrainer

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "interpolation"
PAPER_CONFIG = CONFIG_DIR / "geninr_config.yaml"
FAST_CONFIG = CONFIG_DIR / "geninr_fast.yaml"
MODES = {"paper": PAPER_CONFIG, "fast": FAST_CONFIG}
REPEATS = {"reference": 2, "paper": 2, "fast": 4}
"""Steps timed per round (a reference or paper step is one 114,080-point B-scan, a fast step 65,536 points)."""


@dataclass(frozen=True)
class Workload:
    """Random training data of paper shape (``bscan`` = H x W, ``slices`` input B-scans per eye)."""

    bscan: tuple[int, int] = (230, 496)
    eyes: int = 4
    slices: int = 16
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def data(self, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Volumes ``[E, H, W, S]``, labels and SLO ``[E, W, S]`` on the device."""
        generator = torch.Generator().manual_seed(seed)
        volumes = torch.rand(self.eyes, *self.bscan, self.slices, generator=generator)
        labels = torch.randint(13, (self.eyes, *self.bscan, self.slices), generator=generator, dtype=torch.uint8)
        slo = torch.rand(self.eyes, self.bscan[1], self.slices, generator=generator)
        return volumes.to(self.device), labels.to(self.device), slo.to(self.device)

    def synchronize(self) -> None:
        """Wait for the device's queued work (a no-op on the CPU), so timings cover it."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _rate(step: Callable[[], object], points: int, repeats: int, workload: Workload) -> float:
    workload.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    workload.synchronize()
    return points * repeats / (time.perf_counter() - started)


def reference_step(workload: Workload) -> tuple[Callable[[], object], int]:
    """The reference-style step (one whole B-scan per step) and its points per step."""
    trainer = ReferenceTrainer(*workload.data())
    counter = iter(range(10**9))

    def step() -> float:
        i = next(counter)
        return trainer.step(i % workload.eyes, i % workload.slices)

    return step, trainer.points_per_step


def our_trainer(mode: str, compile_step: bool, workload: Workload) -> NetworkTrainer:
    """:class:`NetworkTrainer` on the ``mode``'s config (:data:`MODES`), ``torch.compile`` optional."""
    config = load_experiment_config(MODES[mode], [f"SETTINGS.COMPILE={str(compile_step).lower()}"])
    volumes, labels, slo = workload.data()
    scale = config.PREPROCESSING.SLICE_COORD_SCALE
    slices = (torch.linspace(-1, 1, workload.slices, device=workload.device) * scale).expand(workload.eyes, -1)
    data = SparseVolumes(volumes, labels, slo, slices.contiguous())
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=128, num_classes=13)).to(workload.device)
    return NetworkTrainer(network, data, config, None, progress=False)


def our_step(mode: str, compile_step: bool, workload: Workload) -> tuple[Callable[[], object], int]:
    """The step of :func:`our_trainer` and its points per step."""
    trainer = our_trainer(mode, compile_step, workload)
    return trainer.step, trainer.plan.points


def run(compile_step: bool = True, rounds: int = 3, workload: Workload | None = None) -> dict[str, dict[str, float]]:
    """Rates (points/s) of each step, measured in ``rounds`` interleaved rounds.

    Every round times each step in turn, so a change of the machine's load during the run
    affects all of them alike; per step the median rate and the median of its per-round
    ratios to the reference are returned with the points per step
    (``{"reference": {"rate": ..., "ratio": 1.0, "spread": ..., "points": ...}, ...}``).
    """
    workload = workload or Workload()
    steps = {"reference": reference_step(workload)}
    for mode in MODES:
        steps[f"{mode}_eager"] = our_step(mode, False, workload)
        if compile_step:
            steps[f"{mode}_compiled"] = our_step(mode, True, workload)
    repeats = {name: REPEATS[name.split("_")[0]] for name in steps}
    if workload.device.type == "cuda":  # steps of milliseconds: time more of them
        repeats = {name: 20 * count for name, count in repeats.items()}
    for name, (step, _) in steps.items():  # warm-up: first-call allocations, compilation
        for _ in range(3 if name.endswith("_compiled") else 1):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, (step, points) in steps.items():
            rates[name].append(_rate(step, points, repeats[name], workload))
    return {
        name: {
            "rate": statistics.median(values),
            "ratio": statistics.median(v / r for v, r in zip(values, rates["reference"])),
            "spread": max(values) / min(values),
            "points": steps[name][1],
        }
        for name, values in rates.items()
    }
