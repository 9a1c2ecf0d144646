"""Optimisation of implicit networks on sparse B-scans: the population (auto-decoder) and single eyes.

One step draws random B-scan patches across all eyes and input B-scans (kept on the
device), evaluates the network with each eye's latent code, and updates the network and
the codes. Losses are accumulated on the device and read back only at summaries.
Checkpoints (network, codes, optimiser, scheduler, random states, epoch, best loss) are
written atomically every ``CHECKPOINT_EVERY`` epochs, at the end, and when SIGTERM or
SIGINT asks the run to stop; ``resume`` continues from the last one.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from anisotropic_interpolation.checkpoints import (
    StopFlag, load_checkpoint, restore_rng_states, rng_states, save_checkpoint, stop_on_signals,
)
from anisotropic_interpolation.config import ExperimentConfig
from anisotropic_interpolation.losses import code_penalty, reconstruction_loss, segmentation_loss
from anisotropic_interpolation.model import ImplicitNetwork
from anisotropic_interpolation.sampling import PointBatch, SparseVolumes
from retina_data.errors import DataError
from retina_data.files import atomic_write_text
from retina_data.precision import native_bf16

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
TRAINING_LOG = "training_log.csv"
LOSS_NAMES = ("loss", "recon", "seg")


class PointObjective(nn.Module):
    """Weighted loss of one batch: ``forward(...) -> [3]`` = (total, reconstruction, segmentation).

    Args:
        network: the implicit network.
        recon: ``MSE``, ``SSIM`` or ``Combi``.
        recon_weight, seg_weight: loss weights (``LOSS_WEIGHT_RECON``, ``LOSS_WEIGHT_SEG``).
        seg: ``CE`` or ``BCE``.
        code_weight: weight of the latent-code penalty.
    """

    def __init__(self, network: ImplicitNetwork, recon: str, recon_weight: float, seg: str,
                 seg_weight: float, code_weight: float) -> None:
        super().__init__()
        self.network = network
        self.recon, self.seg = recon, seg
        self.recon_weight, self.seg_weight, self.code_weight = recon_weight, seg_weight, code_weight

    def forward(self, coords: Tensor, extra: Tensor | None, eye: Tensor, intensity: Tensor,
                labels: Tensor | None, codes: Tensor | None) -> Tensor:
        logit, class_logits = self.network(coords, extra, codes, eye)
        prediction = torch.sigmoid(logit.float()).view_as(intensity)
        recon = reconstruction_loss(prediction, intensity, self.recon)
        total = self.recon_weight * recon
        seg = torch.zeros((), device=coords.device)
        if labels is not None and class_logits is not None:
            seg = segmentation_loss(class_logits.float(), labels, self.seg)
            total = total + self.seg_weight * seg
        if codes is not None and self.code_weight > 0:
            total = total + self.code_weight * code_penalty(codes)
        return torch.stack([total, recon, seg])


def objective_from_config(network: ImplicitNetwork, config: ExperimentConfig, *, code_weight: float) -> PointObjective:
    train = config.TRAINING
    return PointObjective(network, train.LOSS_RECON, train.LOSS_WEIGHT_RECON, train.LOSS_SEG,
                          train.LOSS_WEIGHT_SEG, code_weight)


def mixed_precision_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of mixed precision on ``device``: bf16 on GPUs that compute in it
    natively (:func:`retina_data.precision.native_bf16`), ``None`` (fp32) elsewhere."""
    return torch.bfloat16 if native_bf16(device) else None


def precision_label(device: torch.device, enabled: bool) -> str:
    """What a run on ``device`` computes in, mixed precision ``enabled`` or not: ``bf16 autocast`` or ``fp32``."""
    return "bf16 autocast" if enabled and mixed_precision_dtype(device) is not None else "fp32"


def autocast_context(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Autocast to :func:`mixed_precision_dtype` when ``enabled`` and the device has one."""
    dtype = mixed_precision_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class StepPlan:
    """How a step draws its points and how many steps an epoch has.

    A step draws ``micro_batches`` micro-batches of ``patches`` patches of ``patch x patch``
    points each; their gradients are summed with equal weights, so the update equals that of
    one batch of all ``points``.
    """

    patches: int
    patch: int
    steps_per_epoch: int
    micro_batches: int = 1

    @classmethod
    def for_data(cls, data: SparseVolumes, batch_points: int, patch: int, steps_per_epoch: int | None,
                 micro_batch_points: int | None = None) -> StepPlan:
        """``batch_points`` in whole patches, split into equal micro-batches of at most
        ``micro_batch_points`` (at least one patch each; ``None``: no split)."""
        patch = data.patch_size(patch)
        size = patch * patch
        patches = max(1, batch_points // size)
        largest = patches if micro_batch_points is None else max(1, micro_batch_points // size)
        micro_batches = math.ceil(patches / largest)
        per_micro_batch = math.ceil(patches / micro_batches)
        steps = steps_per_epoch or max(1, math.ceil(data.num_points / (micro_batches * per_micro_batch * size)))
        return cls(per_micro_batch, patch, steps, micro_batches)

    @property
    def points(self) -> int:
        """Points per step (all micro-batches)."""
        return self.micro_batches * self.patches * self.patch * self.patch


def make_step(objective: Callable[..., Tensor], data: SparseVolumes, codes: Tensor | None,
              optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler | None,
              plan: StepPlan, generator: torch.Generator, mixed_precision: bool,
              compile_update: bool = False) -> Callable[[], Tensor]:
    """One optimisation step on fresh random micro-batches; returns the detached loss terms ``[3]``.

    Each micro-batch's loss is weighted by ``1 / micro_batches`` before its backward pass, so
    the summed gradient is the gradient of the mean loss over the whole step (every loss term
    is a mean over equally sized micro-batches; the code penalty is the same in each).

    With ``compile_update`` the forward and backward of a micro-batch and the optimiser step
    are ``torch.compile``d (the backward and the Adam update are fused too, not only the
    loss); the optimiser's learning rates must then be tensors (a float rate changed by the
    scheduler would recompile every step). Sampling and the scheduler stay eager.
    """
    device = data.intensity.device
    weight = 1.0 / plan.micro_batches

    def accumulate(batch: PointBatch) -> Tensor:
        with autocast_context(device, mixed_precision):
            terms = objective(batch.coords, batch.extra, batch.eye, batch.intensity, batch.labels, codes)
        (terms[0] * weight).backward()
        return terms.detach() * weight

    def apply() -> None:
        optimizer.step()

    run_accumulate = torch.compile(accumulate) if compile_update else accumulate
    run_apply = torch.compile(apply) if compile_update else apply

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms = run_accumulate(data.sample(plan.patches, plan.patch, generator))
        for _ in range(plan.micro_batches - 1):
            terms = terms + run_accumulate(data.sample(plan.patches, plan.patch, generator))
        run_apply()
        if scheduler is not None:
            scheduler.step()
        return terms

    return step


def cosine_schedule(total_steps: int, min_factor: float) -> Callable[[int], float]:
    """Learning-rate factor decaying from 1 to ``min_factor`` over ``total_steps``."""
    def factor(step: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def maybe_compile(module: Callable[..., Tensor], enabled: bool) -> Callable[..., Tensor]:
    """``torch.compile(module)`` when enabled."""
    return torch.compile(module) if enabled else module


@dataclass
class TrainingOutcome:
    """How a training run ended."""

    epochs_done: int
    best_loss: float
    interrupted: bool = False
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


class NetworkTrainer:
    """Trains a network (and one latent code per eye, if ``latent_size > 0``) on sparse B-scans.

    Args:
        network: the implicit network (modified in place; holds the best weights afterwards).
        data: the training eyes' input B-scans.
        config: the experiment config (``TRAINING`` section and ``SETTINGS.COMPILE``).
        checkpoint_dir: where ``last.pt``, ``best.pt`` and ``training_log.csv`` go; ``None``: nowhere.
        description: label of the progress bar.
        progress: show the progress bar.
    """

    def __init__(self, network: ImplicitNetwork, data: SparseVolumes, config: ExperimentConfig,
                 checkpoint_dir: Path | None, description: str = "training", progress: bool = True) -> None:
        train = config.TRAINING
        device = data.intensity.device
        self.network, self.data, self.config = network, data, config
        self.checkpoint_dir, self.description, self.progress = checkpoint_dir, description, progress
        latent_size = network.inputs.latent_size
        torch.manual_seed(train.SEED)
        self.codes = (nn.Parameter(torch.randn(data.num_eyes, latent_size, device=device) * train.LATENT_CODE.INIT_STD)
                      if latent_size else None)
        self.plan = StepPlan.for_data(data, train.BATCH_POINTS, config.patch_size, train.STEPS_PER_EPOCH,
                                      config.micro_batch_points(device))
        total_steps = train.TOTAL_EPOCHS * self.plan.steps_per_epoch
        compile_update = config.compile_for(total_steps)

        def rate(value: float) -> float | Tensor:  # a compiled update needs tensor rates (no recompiles)
            return torch.tensor(value, device=device) if compile_update else value

        groups: list[dict[str, Any]] = [{"params": list(network.parameters()), "lr": rate(train.LEARNING_RATE)}]
        if self.codes is not None:
            groups.append({"params": [self.codes], "lr": rate(train.LATENT_LEARNING_RATE or train.LEARNING_RATE)})
        self.optimizer = torch.optim.Adam(groups)
        self.scheduler = (torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_schedule(total_steps, train.LR_MIN_FACTOR))
                          if train.LR_SCHEDULE == "cosine" else None)
        self.generator = torch.Generator(device=device).manual_seed(train.SEED)
        objective = objective_from_config(network, config, code_weight=train.LATENT_CODE.REG_WEIGHT)
        self.step = make_step(objective, data, self.codes, self.optimizer, self.scheduler, self.plan,
                              self.generator, train.MIXED_PRECISION, compile_update)
        self.epoch = 0
        self.best_loss = math.inf
        self.best_state: dict[str, Any] = self._weights()
        self.history: list[dict[str, float]] = []

    def _weights(self) -> dict[str, Any]:
        return {"network": copy.deepcopy(self.network.state_dict()),
                "codes": None if self.codes is None else self.codes.detach().clone()}

    def _state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "best_loss": self.best_loss, "history": self.history,
            "network": self.network.state_dict(), "codes": None if self.codes is None else self.codes.detach(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": rng_states(self.generator),
        }

    def _save_last(self) -> None:
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir / LAST_CHECKPOINT, self._state())

    def _resume(self) -> None:
        state = load_checkpoint(self.checkpoint_dir / LAST_CHECKPOINT, self.data.intensity.device)
        self.network.load_state_dict(state["network"])
        if self.codes is not None:
            stored = state["codes"]
            if stored is None or stored.shape != self.codes.shape:
                raise DataError(f"{self.checkpoint_dir / LAST_CHECKPOINT}: latent codes "
                                f"{None if stored is None else tuple(stored.shape)} do not match "
                                f"{tuple(self.codes.shape)} of this run's training eyes")
            with torch.no_grad():
                self.codes.copy_(state["codes"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_states(state["rng"], self.generator)
        self.epoch, self.best_loss, self.history = state["epoch"], state["best_loss"], state["history"]
        best_path = self.checkpoint_dir / BEST_CHECKPOINT
        self.best_state = load_checkpoint(best_path, self.data.intensity.device) if best_path.is_file() else self._weights()

    def _summary(self, running: Tensor, steps: int, started: float) -> dict[str, float]:
        means = (running / max(steps, 1)).tolist()
        row = {"epoch": float(self.epoch), **dict(zip(LOSS_NAMES, means)),
               "lr": float(self.optimizer.param_groups[0]["lr"]), "seconds": time.perf_counter() - started}
        self.history.append(row)
        if self.checkpoint_dir is not None:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.history)
            atomic_write_text(self.checkpoint_dir / TRAINING_LOG, text.getvalue())
        return row

    def train(self, resume: bool = False) -> TrainingOutcome:
        """Run (or continue) the training; afterwards the network and codes hold the best weights."""
        train = self.config.TRAINING
        if self.checkpoint_dir is not None:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if resume and (self.checkpoint_dir / LAST_CHECKPOINT).is_file():
                self._resume()
        self.network.train()
        outcome = TrainingOutcome(self.epoch, self.best_loss)
        started = time.perf_counter()
        running = torch.zeros(3, device=self.data.intensity.device)
        steps = 0
        stale = 0
        with stop_on_signals() as stop, tqdm(total=train.TOTAL_EPOCHS, initial=self.epoch, desc=self.description,
                                             unit="epoch", leave=False, disable=not self.progress) as bar:
            while self.epoch < train.TOTAL_EPOCHS:
                if not self._run_epoch(stop, running):
                    outcome.interrupted = True
                    self._save_last()
                    break
                self.epoch += 1
                steps += self.plan.steps_per_epoch
                bar.update(1)
                last = self.epoch == train.TOTAL_EPOCHS
                if self.epoch % train.EPOCHS_TIL_SUMMARY == 0 or last:
                    row = self._summary(running, steps, started)
                    running.zero_()
                    steps = 0
                    bar.set_postfix(loss=f"{row['loss']:.4g}")
                    if row["loss"] < self.best_loss:
                        self.best_loss, stale = row["loss"], 0
                        self.best_state = self._weights()
                        if self.checkpoint_dir is not None:
                            save_checkpoint(self.checkpoint_dir / BEST_CHECKPOINT, self.best_state)
                    else:
                        stale += 1
                    if train.EARLY_STOPPING_PATIENCE and stale >= train.EARLY_STOPPING_PATIENCE:
                        outcome.stopped_early = True
                        self._save_last()
                        break
                if self.epoch % train.CHECKPOINT_EVERY == 0 or last:
                    self._save_last()
        self.load_best()
        outcome.epochs_done, outcome.best_loss, outcome.history = self.epoch, self.best_loss, self.history
        return outcome

    def _run_epoch(self, stop: StopFlag, running: Tensor) -> bool:
        """One epoch of steps; ``False`` if a stop was requested part-way (the epoch does not count)."""
        for _ in range(self.plan.steps_per_epoch):
            running += self.step()
            if stop.requested:
                return False
        return True

    def load_best(self) -> None:
        """Put the best weights and codes into the network and ``codes``."""
        self.network.load_state_dict(self.best_state["network"])
        if self.codes is not None and self.best_state["codes"] is not None:
            with torch.no_grad():
                self.codes.copy_(self.best_state["codes"])
