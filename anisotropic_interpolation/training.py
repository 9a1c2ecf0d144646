"""Optimisation of implicit networks on sparse B-scans: the population (auto-decoder) and single eyes.

With ``SAMPLING: bscan`` (the reference) one step is one whole input B-scan of one eye and
an epoch visits every (eye, B-scan) pair once in random order; with ``patches`` (ours) one
step draws random B-scan patches across all eyes and input B-scans. Data stay on the
device; the network is evaluated with each eye's latent code and the network and the codes
are updated. The learning rate decays per epoch (``exponential``) or per step (``cosine``);
the best epoch (lowest mean loss) is kept and early stopping watches the epoch mean loss.
With ``HOLDOUT_BSCANS`` some input B-scans of every eye are left out of the fit: their loss
chooses the epoch and drives early stopping, and ``HOLDOUT_REFIT`` fits again on all inputs
for the chosen number of epochs. A non-finite loss or weight stops the run with a
:class:`~retina_data.errors.TrainingDivergedError`, the finite checkpoints left in place.
Checkpoints (network, codes, optimiser, scheduler, early stopping, best weights, random
states, epoch) are written atomically every ``CHECKPOINT_EVERY`` epochs, at the end, and when
SIGTERM or SIGINT asks the run to stop; ``resume`` continues from the last one.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from anisotropic_interpolation.checkpoints import StopFlag, restore_rng_states, rng_states, stop_on_signals
from anisotropic_interpolation.config import CodePenalty, ExperimentConfig, LossRecon, LossSeg, LrSchedule, SsimWindow
from anisotropic_interpolation.distributed import EyeShard
from anisotropic_interpolation.losses import code_penalty, reconstruction_loss, segmentation_loss
from anisotropic_interpolation.model import ImplicitNetwork
from anisotropic_interpolation.sampling import PointBatch, TrainingVolumes
from retina_data.checkpoints import load_checkpoint, save_checkpoint
from retina_data.errors import ConfigError, DataError, TrainingDivergedError
from retina_data.files import atomic_write_text
from retina_data.precision import native_bf16
from retina_data.run_loggers import log_summary

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
TRAINING_LOG = "training_log.csv"
LOSS_NAMES = ("loss", "recon", "seg")


class PointObjective(nn.Module):
    """Weighted loss of each image of a batch: ``forward(...) -> [P, 3]`` = (total, reconstruction,
    segmentation) per image (a B-scan or a patch).

    Args:
        network: the implicit network.
        recon: ``MSE``, ``SSIM`` or ``Combi``; ``ssim_weight`` and ``ssim_window`` as in
            :func:`anisotropic_interpolation.losses.reconstruction_loss`.
        recon_weight, seg_weight: loss weights (``LOSS_WEIGHT_RECON``, ``LOSS_WEIGHT_SEG``).
        seg: ``softmax_BCE`` or ``CE``.
        code_weight, code_kind: weight and form of the latent-code penalty.
    """

    def __init__(
        self,
        network: ImplicitNetwork,
        recon: LossRecon,
        recon_weight: float,
        seg: LossSeg,
        seg_weight: float,
        code_weight: float,
        code_kind: CodePenalty = "eye_mean_square",
        ssim_weight: float = 0.1,
        ssim_window: SsimWindow = "gaussian11_zero_padded",
    ) -> None:
        super().__init__()
        self.network = network
        self.recon, self.seg, self.code_kind = recon, seg, code_kind
        self.recon_weight, self.seg_weight, self.code_weight = recon_weight, seg_weight, code_weight
        self.ssim_weight, self.ssim_window = ssim_weight, ssim_window

    def without_code_penalty(self) -> PointObjective:
        """The same loss of the same network without the code penalty."""
        return PointObjective(
            self.network,
            self.recon,
            self.recon_weight,
            self.seg,
            self.seg_weight,
            0.0,
            self.code_kind,
            self.ssim_weight,
            self.ssim_window,
        )

    def forward(
        self,
        coords: Tensor,
        extra: Tensor | None,
        eye: Tensor,
        intensity: Tensor,
        labels: Tensor | None,
        codes: Tensor | None,
    ) -> Tensor:
        logit, class_logits = self.network(coords, extra, codes, eye)
        return self.terms(logit, class_logits, eye, intensity, labels, codes)

    def terms(
        self,
        logit: Tensor,
        class_logits: Tensor | None,
        eye: Tensor,
        intensity: Tensor,
        labels: Tensor | None,
        codes: Tensor | None,
    ) -> Tensor:
        """Loss terms ``[P, 3]`` of network outputs ``logit [N]``, ``class_logits [N, C]`` for the
        points ``eye [N]`` of ``P`` images ``intensity [P, h, w]`` (``labels [N]``)."""
        images = intensity.shape[0]
        prediction = torch.sigmoid(logit.float()).view_as(intensity)
        recon = reconstruction_loss(prediction, intensity, self.recon, self.ssim_weight, self.ssim_window)
        total = self.recon_weight * recon
        seg = torch.zeros_like(recon)
        if labels is not None and class_logits is not None:
            seg = segmentation_loss(class_logits, labels, self.seg).view(images, -1).mean(1)
            total = total + self.seg_weight * seg
        if codes is not None and self.code_weight > 0:
            total = total + self.code_weight * code_penalty(codes, eye.view(images, -1)[:, 0], self.code_kind)
        return torch.stack([total, recon, seg], dim=1)


def objective_from_config(network: ImplicitNetwork, config: ExperimentConfig) -> PointObjective:
    """The training loss of ``config`` (the test-time fit uses it without labels, so without its
    segmentation term)."""
    train = config.TRAINING
    return PointObjective(
        network,
        train.LOSS_RECON,
        train.LOSS_WEIGHT_RECON,
        train.LOSS_SEG,
        train.LOSS_WEIGHT_SEG,
        train.LATENT_CODE.weight(config.MODEL.MODULATION),
        train.LATENT_CODE.REG_TYPE,
        train.SSIM_WEIGHT,
        train.SSIM_WINDOW,
    )


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

    ``patches`` sampling: a step draws ``micro_batches`` micro-batches of ``images`` patches of
    ``patch x patch`` points each; their gradients are summed with equal weights, so the update
    equals that of one batch of all ``points``. ``bscan`` sampling: a step is ``images`` whole
    B-scans (one, or one per eye being fitted) of ``points`` points, evaluated in
    ``micro_batches`` chunks with the loss of the whole B-scans (see :func:`make_step`).
    """

    images: int
    patch: int
    steps_per_epoch: int
    micro_batches: int = 1
    sampling: Literal["patches", "bscan"] = "patches"
    bscan_points: int = 0

    @classmethod
    def for_data(
        cls,
        data: TrainingVolumes,
        batch_points: int,
        patch: int,
        steps_per_epoch: int | None,
        micro_batch_points: int | None = None,
        total_eyes: int | None = None,
    ) -> StepPlan:
        """Patches: ``batch_points`` in whole patches, split into equal micro-batches of at most
        ``micro_batch_points`` (at least one patch each; ``None``: no split). ``total_eyes``: the
        eyes of all processes when ``data`` holds a shard of them (``None``: ``data``'s)."""
        patch = data.patch_size(patch)
        size = patch * patch
        patches = max(1, batch_points // size)
        largest = patches if micro_batch_points is None else max(1, micro_batch_points // size)
        micro_batches = math.ceil(patches / largest)
        per_micro_batch = math.ceil(patches / micro_batches)
        points = data.height * data.width * data.num_slices * (data.num_eyes if total_eyes is None else total_eyes)
        steps = steps_per_epoch or max(1, math.ceil(points / (micro_batches * per_micro_batch * size)))
        return cls(per_micro_batch, patch, steps, micro_batches)

    @classmethod
    def for_bscans(
        cls,
        data: TrainingVolumes,
        every_eye: bool,
        steps_per_epoch: int | None,
        micro_batch_points: int | None = None,
        total_eyes: int | None = None,
    ) -> StepPlan:
        """Whole B-scans: one per step (``every_eye=False``: an epoch is every (eye, B-scan) pair)
        or one of every eye per step (an epoch is every B-scan of each eye); ``total_eyes`` as in
        :meth:`for_data` (a step's images and points are then those of all processes)."""
        eyes = data.num_eyes if total_eyes is None else total_eyes
        images = eyes if every_eye else 1
        points = images * data.height * data.width
        micro_batches = 1 if micro_batch_points is None else math.ceil(points / micro_batch_points)
        steps = steps_per_epoch or data.num_slices * (1 if every_eye else eyes)
        return cls(images, 0, steps, micro_batches, "bscan", points)

    @classmethod
    def from_config(
        cls,
        data: TrainingVolumes,
        sampling: str,
        batch_points: int,
        patch: int,
        steps_per_epoch: int | None,
        micro_batch_points: int | None,
        every_eye: bool,
        total_eyes: int | None = None,
    ) -> StepPlan:
        """:meth:`for_bscans` or :meth:`for_data`, by ``sampling``."""
        if sampling == "bscan":
            return cls.for_bscans(data, every_eye, steps_per_epoch, micro_batch_points, total_eyes)
        return cls.for_data(data, batch_points, patch, steps_per_epoch, micro_batch_points, total_eyes)

    @property
    def points(self) -> int:
        """Points per step (all micro-batches)."""
        if self.sampling == "bscan":
            return self.bscan_points
        return self.micro_batches * self.images * self.patch * self.patch


@dataclass
class LocalBatch:
    """The images of this process's eyes in one micro-batch drawn over the eyes of all processes.

    ``batch`` holds them (``None``: none here); its first ``images`` images are real, any further
    ones repeat a real one with weight 0, so that the batch sizes of a compiled step come in a
    few buckets instead of every count. ``global_images``: the images of the micro-batch in all
    processes (the single-process loss is the mean over them).
    """

    batch: PointBatch | None
    images: int
    global_images: int

    def weights(self) -> Tensor:
        """``[P]`` the weight of each image of ``batch`` in the global mean: ``1 / global_images``, 0 for padding."""
        assert self.batch is not None
        weights = torch.zeros(self.batch.intensity.shape[0], device=self.batch.intensity.device)
        weights[: self.images] = 1.0 / self.global_images
        return weights


PADDING_BUCKETS = 4
"""A process's share of a micro-batch of patches is padded up to a multiple of
``images / (PADDING_BUCKETS * world)``: a compiled step then sees a few batch sizes."""


class BatchSource:
    """The batches of the steps of an epoch: ``start_epoch()`` once per epoch, then ``next()``
    per step (a list of micro-batches, or one batch of whole B-scans).

    With a ``shard`` of several processes every process draws the same batches over the eyes of
    all of them (the same generator state everywhere) and :meth:`next_local` keeps the images of
    its own eyes (``data`` holds only those, as eyes ``0 .. count - 1``).
    """

    def __init__(
        self, data: TrainingVolumes, plan: StepPlan, generator: torch.Generator, shard: EyeShard | None = None
    ) -> None:
        self.data, self.plan, self.generator = data, plan, generator
        self.shard = EyeShard(data.num_eyes) if shard is None else shard
        if self.shard.count != data.num_eyes:
            raise ValueError(f"the shard holds {self.shard.count} eyes, the data {data.num_eyes}")
        self.order: Tensor | None = None
        self.cursor = 0

    def start_epoch(self) -> None:
        """``bscan``: a new random order (every eye's B-scans permuted, repeated if the epoch
        has more steps than B-scans): ``[steps]`` pairs, or ``[E, steps]`` per eye (of all processes)."""
        if self.plan.sampling != "bscan":
            return
        data, device, eyes = self.data, self.data.device, self.shard.total
        rows = 1 if self.plan.images == 1 else eyes
        items = data.num_slices * (eyes if rows == 1 else 1)
        repeats = math.ceil(self.plan.steps_per_epoch / items)
        blocks = [
            torch.argsort(torch.rand(rows, items, device=device, generator=self.generator), dim=1)
            for _ in range(repeats)
        ]
        self.order = torch.cat(blocks, dim=1)[:, : self.plan.steps_per_epoch]
        self.cursor = 0

    def _next_column(self) -> Tensor:
        if self.order is None:
            self.start_epoch()
        order = self.order
        assert order is not None  # start_epoch draws an order for B-scan sampling
        column = order[:, self.cursor % order.shape[1]]
        self.cursor += 1
        return column

    def next(self) -> list[PointBatch]:
        """The micro-batches of the next step (``bscan``: one batch of whole B-scans)."""
        data, plan = self.data, self.plan
        if plan.sampling != "bscan":
            return [data.sample(plan.images, plan.patch, self.generator) for _ in range(plan.micro_batches)]
        column = self._next_column()
        if plan.images == 1:  # one (eye, B-scan) pair
            return [data.bscans(column // data.num_slices, column % data.num_slices)]
        return [data.bscans(torch.arange(data.num_eyes, device=column.device), column)]

    def next_local(self) -> list[LocalBatch]:
        """The micro-batches of the next step drawn over the eyes of all processes, each restricted
        to this process's eyes (the same draws as :meth:`next` of one process holding every eye)."""
        data, plan, shard = self.data, self.plan, self.shard
        if plan.sampling != "bscan":
            return [
                self._local_patches(*data.draw_patches(plan.images, plan.patch, self.generator, shard.total))
                for _ in range(plan.micro_batches)
            ]
        column = self._next_column()
        if plan.images == 1:  # one (eye, B-scan) pair: here or in another process
            eye = column // data.num_slices - shard.first
            here = 0 <= int(eye) < shard.count
            return [LocalBatch(data.bscans(eye, column % data.num_slices) if here else None, int(here), 1)]
        rows = column[shard.first : shard.first + shard.count]
        batch = data.bscans(torch.arange(shard.count, device=column.device), rows) if shard.count else None
        return [LocalBatch(batch, shard.count, shard.total)]

    def _local_patches(self, eye: Tensor, bscan: Tensor, top: Tensor, left: Tensor) -> LocalBatch:
        """The patches ``eye, bscan, top, left [P, 1, 1]`` (global eyes) of this process's eyes, padded."""
        shard, images = self.shard, eye.shape[0]
        local = eye - shard.first
        keep = ((local >= 0) & (local < shard.count)).view(-1).nonzero().view(-1)
        count = int(keep.numel())
        if count == 0:
            return LocalBatch(None, 0, images)
        bucket = max(1, math.ceil(images / (PADDING_BUCKETS * shard.world)))
        padded = min(images, math.ceil(count / bucket) * bucket)
        index = torch.cat([keep, keep[:1].expand(padded - count)])
        return LocalBatch(
            self.data.patches(local[index], bscan[index], top[index], left[index], self.plan.patch), count, images
        )


@dataclass
class StepLosses:
    """Per-eye loss sums of the steps so far (for each eye's epoch mean): ``totals, counts [E]``."""

    totals: Tensor
    counts: Tensor

    @classmethod
    def zeros(cls, eyes: int, device: torch.device) -> StepLosses:
        return cls(torch.zeros(eyes, device=device), torch.zeros(eyes, device=device))

    def add(self, image_totals: Tensor, image_eye: Tensor) -> None:
        self.totals.index_add_(0, image_eye, image_totals.detach().float())
        self.counts.index_add_(0, image_eye, torch.ones_like(image_totals, dtype=torch.float32))

    def take_means(self) -> Tensor:
        """``[E]`` mean loss per eye (NaN for an eye without images), and reset."""
        means = self.totals / self.counts
        self.totals.zero_()
        self.counts.zero_()
        return means


def _chunks(points: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, points)) for start in range(0, points, size)]


def sum_gradients(network: nn.Module, codes: Tensor | None, step_terms: Tensor, shard: EyeShard) -> None:
    """Sum the network gradients and the loss terms ``step_terms [3]`` (in place) over the
    processes of ``shard``, in one collective. A parameter without a gradient in every process
    keeps none (as in one process, Adam then skips it); the codes of this process get a zero
    gradient where none of their eyes was in the step, as their rows of all codes get in one
    process (Adam then moves them on their moments, everywhere alike)."""
    parameters = list(network.parameters())
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in parameters]
    present = torch.tensor([float(p.grad is not None) for p in parameters], device=step_terms.device)
    flat = shard.sum_(torch.cat([*(grad.reshape(-1).float() for grad in grads), step_terms, present]))
    offset = 0
    for parameter, grad in zip(parameters, grads):
        size = grad.numel()
        parameter.grad = flat[offset : offset + size].view_as(grad).to(grad.dtype)
        offset += size
    step_terms.copy_(flat[offset : offset + 3])
    for parameter, count in zip(parameters, flat[offset + 3 :].tolist()):
        if count == 0:
            parameter.grad = None
    if codes is not None and codes.grad is None:
        codes.grad = torch.zeros_like(codes)


def make_step(
    objective: PointObjective,
    source: BatchSource,
    codes: Tensor | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    mixed_precision: bool,
    compile_update: bool = False,
    *,
    sum_over_images: bool = False,
    per_eye: StepLosses | None = None,
    compiled_objective: Callable[..., Tensor] | None = None,
) -> Callable[[], Tensor]:
    """One optimisation step on the next batch of ``source``; returns the detached loss terms ``[3]``.

    The step's loss is the mean (``sum_over_images``: the sum) of its images' losses. With
    patches, each micro-batch's loss is weighted by ``1 / micro_batches`` before its backward
    pass, so the summed gradient is the gradient of the mean loss over the whole step. Whole
    B-scans larger than one micro-batch are evaluated in two passes that give the same
    update as one batch: the network outputs of every chunk without gradients, then the loss
    of the whole B-scans (SSIM needs all of it) and its gradient with respect to the outputs,
    then per chunk the forward again and the backward of those output gradients (dropout
    masks are replayed, so both passes see the same network).

    When ``source`` holds one shard of the eyes of several processes (:class:`EyeShard`), each
    process evaluates the images of its eyes of the globally drawn batch, each weighted by
    ``1 / (images of the micro-batch in all processes)``; the network gradients and the loss
    terms are then summed over the processes before the optimiser step, so every process
    makes the update of one process with the whole batch (and its codes get the gradients
    they get there). The ``all_codes_squared_norm`` penalty, the mean over every code, is
    then added once per step as each process's part of it (its codes' ``|z|²`` over all eyes).

    ``scheduler`` (if any) is stepped after every step (a per-step schedule). ``per_eye``
    collects each image's total loss by eye. With ``compile_update`` the forward and backward
    of a micro-batch and the optimiser step are ``torch.compile``d (the optimiser's learning
    rates must then be tensors: a float rate changed by a scheduler would recompile every
    step); the two-pass path stays eager. ``compiled_objective`` replaces ``objective`` in the
    one-pass path (a compiled module reused across calls).
    """
    plan, shard = source.plan, source.shard
    device = source.data.device
    network = objective.network
    replay_dropout = any(isinstance(module, nn.Dropout) for module in network.modules())
    shared_penalty = (
        shard.distributed
        and codes is not None
        and objective.code_weight > 0
        and objective.code_kind == "all_codes_squared_norm"
    )
    penalty_weight = objective.code_weight
    if shared_penalty:
        objective = objective.without_code_penalty()
    call = compiled_objective if compiled_objective is not None and not shared_penalty else objective
    if shard.distributed and (sum_over_images or per_eye is not None):
        raise ValueError("a step over the eyes of several processes takes the mean over the images, per eye unrecorded")

    def reduce(terms: Tensor, weights: Tensor | None) -> Tensor:
        if weights is not None:
            return (terms * weights[:, None]).sum(0)
        return terms.sum(0) if sum_over_images else terms.mean(0)

    def accumulate(batch: PointBatch, weight: float, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with autocast_context(device, mixed_precision):
            terms = call(batch.coords, batch.extra, batch.eye, batch.intensity, batch.labels, codes)
        step_terms = reduce(terms, weights)
        (step_terms[0] * weight).backward()
        return step_terms.detach() * weight, terms[:, 0].detach()

    def two_pass(batch: PointBatch, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        chunks = _chunks(batch.coords.shape[0], math.ceil(plan.points / plan.micro_batches))

        def outputs(part: slice) -> tuple[Tensor, Tensor | None]:
            with autocast_context(device, mixed_precision):
                return network(
                    batch.coords[part], None if batch.extra is None else batch.extra[part], codes, batch.eye[part]
                )

        forked = (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
            if replay_dropout
            else contextlib.nullcontext()
        )
        with torch.no_grad(), forked:
            first = [outputs(part) for part in chunks]
        logit = torch.cat([out[0] for out in first]).requires_grad_()
        class_parts = [out[1] for out in first if out[1] is not None]
        class_logits = torch.cat(class_parts).requires_grad_() if class_parts else None
        with autocast_context(device, mixed_precision):
            terms = objective.terms(logit, class_logits, batch.eye, batch.intensity, batch.labels, codes)
        step_terms = reduce(terms, weights)
        step_terms[0].backward()  # gradients of the outputs, and of the code penalty into the codes
        logit_grad = logit.grad
        class_grad = None if class_logits is None else class_logits.grad
        assert logit_grad is not None  # the intensity loss always depends on the logits
        for part in chunks:
            out_logit, out_classes = outputs(part)
            tensors, grads = [out_logit], [logit_grad[part]]
            if out_classes is not None and class_grad is not None:
                tensors.append(out_classes)
                grads.append(class_grad[part])
            torch.autograd.backward(tensors, grads)
        return step_terms.detach(), terms[:, 0].detach()

    def apply() -> None:
        optimizer.step()

    run_accumulate = torch.compile(accumulate, dynamic=False) if compile_update else accumulate
    run_apply = torch.compile(apply, dynamic=False) if compile_update else apply
    two_passes = plan.sampling == "bscan" and plan.micro_batches > 1

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        batches = source.next()
        results = (
            [two_pass(batches[0])] if two_passes else [run_accumulate(batch, 1.0 / len(batches)) for batch in batches]
        )
        run_apply()
        if scheduler is not None:
            scheduler.step()
        if per_eye is not None:
            for batch, (_, image_totals) in zip(batches, results):
                per_eye.add(image_totals, batch.eye.view(image_totals.shape[0], -1)[:, 0])
        return torch.stack([terms for terms, _ in results]).sum(0)

    def sharded_step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        batches = source.next_local()
        step_terms = torch.zeros(3, device=device)
        for local in batches:
            if local.batch is None:
                continue
            weights = local.weights() / len(batches)
            step_terms += (two_pass(local.batch, weights) if two_passes else run_accumulate(local.batch, 1.0, weights))[
                0
            ]
        if shared_penalty and codes is not None:
            penalty = penalty_weight * codes.float().square().sum() / shard.total
            penalty.backward()
            step_terms[0] += penalty.detach()
        sum_gradients(network, codes, step_terms, shard)
        run_apply()
        if scheduler is not None:
            scheduler.step()
        return step_terms

    return sharded_step if shard.distributed else step


def holdout_indices(num_slices: int, count: int, key: str) -> list[int]:
    """The ``count`` input B-scans (of ``num_slices``) held out of a fit for validation, evenly
    spread strictly between the first and the last input, which stay: the kept B-scans keep
    their slow-axis coordinates. ``key`` names the config key in the error for too many."""
    if count == 0:
        return []
    if 2 * count + 1 > num_slices:
        raise ConfigError(
            f"{key} = {count}: expected at most {(num_slices - 1) // 2} for eyes of {num_slices} "
            "input B-scans (the first and the last input stay in the fit)"
        )
    spread = torch.linspace(0, num_slices - 1, count + 2, dtype=torch.float64)[1:-1]
    return torch.floor(spread + 0.5).long().tolist()


def split_holdout(data: TrainingVolumes, count: int, key: str) -> tuple[TrainingVolumes, TrainingVolumes | None]:
    """``(fitted, held out)`` input B-scans of ``data`` with ``count`` per eye held out
    (:func:`holdout_indices`); ``(data, None)`` when ``count`` is 0."""
    held = holdout_indices(data.num_slices, count, key)
    if not held:
        return data, None
    kept = [index for index in range(data.num_slices) if index not in held]
    return (
        data.select_bscans(torch.tensor(kept, device=data.device)),
        data.select_bscans(torch.tensor(held, device=data.device)),
    )


def heldout_losses(
    objective: PointObjective,
    data: TrainingVolumes,
    codes: Tensor | None,
    mixed_precision: bool,
    chunk_points: int | None,
) -> Tensor:
    """``[E]`` each eye's mean loss over its held-out whole B-scans ``data``: the weighted
    reconstruction and segmentation terms of ``objective``, without the code penalty (a
    regulariser, not a measure of fit). No gradients; the network is evaluated in eval mode
    (no dropout), in chunks of ``chunk_points`` (``None``: a B-scan of every eye at once), on
    at most ``data.images_at_once`` eyes' B-scans at a time."""
    network = objective.network
    device = data.device
    totals = torch.zeros(data.num_eyes, device=device)
    block = data.images_at_once or data.num_eyes
    training = network.training
    network.eval()
    try:
        with torch.no_grad(), autocast_context(device, mixed_precision):
            for bscan, start in itertools.product(range(data.num_slices), range(0, data.num_eyes, block)):
                eyes = torch.arange(start, min(start + block, data.num_eyes), device=device)
                batch = data.bscans(eyes, torch.full_like(eyes, bscan))
                outputs = [
                    network(
                        batch.coords[part], None if batch.extra is None else batch.extra[part], codes, batch.eye[part]
                    )
                    for part in _chunks(batch.coords.shape[0], chunk_points or batch.coords.shape[0])
                ]
                logit = torch.cat([out[0] for out in outputs])
                class_logits = None if outputs[0][1] is None else torch.cat([out[1] for out in outputs])
                terms = objective.terms(logit, class_logits, batch.eye, batch.intensity, batch.labels, None)
                totals[eyes] += terms[:, 0].float()
    finally:
        network.train(training)
    return totals / data.num_slices


def check_finite(
    step_terms: Tensor, weights: list[Tensor], what: str, epoch: int, rate_key: str, rate: float, kept: str
) -> None:
    """Raise :class:`~retina_data.errors.TrainingDivergedError` unless every step's loss terms
    ``step_terms [steps, 3]`` of epoch ``epoch`` (1-based) and the ``weights`` after it are finite.

    The message names ``what`` diverged, the epoch, the first step with a non-finite loss and
    its loss terms, ``kept`` (where the last finite weights are) and the learning rate
    ``rate_key`` = ``rate`` to lower.
    """
    finite_steps = torch.isfinite(step_terms).all(1)
    finite_weights = torch.stack([torch.isfinite(weight).all() for weight in weights]).all()
    if bool(finite_steps.all() & finite_weights):
        return
    if bool(finite_steps.all()):
        where = "after its last step: non-finite weights (its losses were finite)"
    else:
        bad = int((~finite_steps).nonzero()[0, 0])
        values = ", ".join(f"{name} {value:.4g}" for name, value in zip(LOSS_NAMES, step_terms[bad].tolist()))
        where = f"step {bad + 1} of {step_terms.shape[0]}: non-finite loss ({values})"
    raise TrainingDivergedError(
        f"{what} diverged in epoch {epoch}, {where}; {kept}; try a lower {rate_key} (now {rate:g})"
    )


def cosine_schedule(total_steps: int, min_factor: float) -> Callable[[int], float]:
    """Learning-rate factor decaying from 1 to ``min_factor`` over ``total_steps``."""

    def factor(step: int) -> float:
        progress = min(step / max(total_steps, 1), 1.0)
        return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@dataclass
class Schedule:
    """The learning-rate schedule of one optimisation: stepped per step or per epoch."""

    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    per_epoch: bool

    @classmethod
    def make(
        cls, optimizer: torch.optim.Optimizer, kind: LrSchedule, gamma: float, min_factor: float, total_steps: int
    ) -> Schedule:
        """``exponential``: times ``gamma`` after every epoch; ``cosine``: per step over
        ``total_steps`` to ``min_factor``; ``constant``: none."""
        if kind == "exponential":
            return cls(torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma), True)
        if kind == "cosine":
            return cls(torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(total_steps, min_factor)), False)
        return cls(None, False)

    @property
    def per_step(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The scheduler to step after every optimisation step (``None``: none)."""
        return None if self.per_epoch else self.scheduler

    def end_epoch(self) -> None:
        if self.per_epoch and self.scheduler is not None:
            self.scheduler.step()


@dataclass
class EarlyStopping:
    """Stop once ``patience`` epochs (0-based index at least ``start_epoch``) have not lowered
    the best epoch mean loss by more than ``min_delta``; ``patience = 0``: never."""

    patience: int
    min_delta: float
    start_epoch: int
    best: float = math.inf
    stale: int = 0

    def update(self, epoch_index: int, loss: float) -> bool:
        """Record the mean loss of epoch ``epoch_index`` (0-based); whether to stop now."""
        if loss < self.best - self.min_delta:
            self.best, self.stale = loss, 0
        elif epoch_index >= self.start_epoch:
            self.stale += 1
        return self.patience > 0 and self.stale >= self.patience


def maybe_compile(module: Callable[..., Tensor], enabled: bool) -> Callable[..., Tensor]:
    """``torch.compile(module)`` with static shapes when enabled: every shape a run uses (one patch
    size, one B-scan size) gets its own graph; with dynamic shapes Inductor fails on the SSIM
    window's ``min(7, h, w)`` once a second shape arrives."""
    return torch.compile(module, dynamic=False) if enabled else module


@dataclass
class TrainingOutcome:
    """How a training run ended (``chosen_epoch``: the epoch kept, by the held-out loss with
    ``HOLDOUT_BSCANS``; ``refitted``: the weights are those of the refit on all inputs)."""

    epochs_done: int
    best_loss: float
    interrupted: bool = False
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    chosen_epoch: int = 0
    refitted: bool = False


REFIT_DIR = "refit"
"""Subfolder of the checkpoints of the refit on all inputs (``TRAINING.HOLDOUT_REFIT``)."""


class NetworkTrainer:
    """Trains a network (and one latent code per eye, if ``latent_size > 0``) on sparse B-scans.

    Args:
        network: the implicit network (modified in place; holds the kept weights afterwards).
        data: the training eyes' input B-scans (``TRAINING.HOLDOUT_BSCANS`` of each eye are
            held out of the fit for validation).
        config: the experiment config (``TRAINING`` section and ``SETTINGS.COMPILE``).
        checkpoint_dir: where ``last.pt``, ``best.pt`` and ``training_log.csv`` go; ``None``: nowhere.
        description: label of the progress bar and of errors.
        progress: show the progress bar.
        epochs: stop after this many epochs (``None``: ``TOTAL_EPOCHS``; the learning-rate
            schedule still spans ``TOTAL_EPOCHS``).
        keep_last: keep the last epoch's weights instead of the lowest-loss epoch's.
        shard: this process's eyes of a run of several processes (``data`` holds only those):
            it optimises their codes; the network update, the epoch losses, early stopping and
            stops are those of all processes. Checkpoints hold every code (and its optimiser
            moments) in global eye order and are written by rank 0; a resume takes this
            process's rows, so it may run with another number of processes.
    """

    def __init__(
        self,
        network: ImplicitNetwork,
        data: TrainingVolumes,
        config: ExperimentConfig,
        checkpoint_dir: Path | None,
        description: str = "training",
        progress: bool = True,
        *,
        epochs: int | None = None,
        keep_last: bool = False,
        shard: EyeShard | None = None,
    ) -> None:
        train = config.TRAINING
        device = data.device
        self.shard = EyeShard(data.num_eyes) if shard is None else shard
        self.all_data = data
        self.data, self.heldout = split_holdout(data, train.HOLDOUT_BSCANS, "TRAINING.HOLDOUT_BSCANS")
        self.network, self.config = network, config
        self.checkpoint_dir, self.description, self.progress = checkpoint_dir, description, progress
        self.epoch_limit = train.TOTAL_EPOCHS if epochs is None else epochs
        self.keep_last = keep_last
        with torch.no_grad():
            self.shard.broadcast_(network.state_dict().values())
        self.initial_network = copy.deepcopy(network.state_dict())
        latent_size = network.inputs.latent_size
        torch.manual_seed(train.SEED)
        self.codes = (
            nn.Parameter(
                self.shard.take_rows(
                    torch.randn(self.shard.total, latent_size, device=device) * train.LATENT_CODE.INIT_STD
                )
            )
            if latent_size
            else None
        )
        self.plan = StepPlan.from_config(
            self.data,
            train.SAMPLING,
            train.BATCH_POINTS,
            config.patch_size,
            train.STEPS_PER_EPOCH,
            config.micro_batch_points(device, train.SAMPLING),
            every_eye=False,
            total_eyes=self.shard.total,
        )
        total_steps = train.TOTAL_EPOCHS * self.plan.steps_per_epoch
        compile_update = config.compile_for(total_steps)

        def rate(value: float) -> float | Tensor:  # a compiled update needs tensor rates (no recompiles)
            return torch.tensor(value, device=device) if compile_update else value

        groups: list[dict[str, Any]] = [{"params": list(network.parameters()), "lr": rate(train.LEARNING_RATE)}]
        if self.codes is not None:
            groups.append({"params": [self.codes], "lr": rate(train.LATENT_LEARNING_RATE or train.LEARNING_RATE)})
        self.optimizer = torch.optim.Adam(groups)
        self.schedule = Schedule.make(
            self.optimizer, train.LR_SCHEDULE, train.LR_GAMMA, train.LR_MIN_FACTOR, total_steps
        )
        self.generator = torch.Generator(device=device).manual_seed(train.SEED)
        self.source = BatchSource(self.data, self.plan, self.generator, self.shard)
        self.objective = objective_from_config(network, config)
        self.step = make_step(
            self.objective,
            self.source,
            self.codes,
            self.optimizer,
            self.schedule.per_step,
            train.MIXED_PRECISION,
            compile_update,
        )
        self.early_stopping = EarlyStopping(
            train.EARLY_STOPPING_PATIENCE, train.EARLY_STOPPING_MIN_DELTA, train.EARLY_STOPPING_START_EPOCH
        )
        self.epoch = 0
        self.stopped_early = False
        self.best_loss = math.inf
        self.best_state: dict[str, Any] = self._weights()
        self.history: list[dict[str, float]] = []

    def _weights(self) -> dict[str, Any]:
        """The weights of this epoch (this process's codes)."""
        return {
            "epoch": self.epoch,
            "network": copy.deepcopy(self.network.state_dict()),
            "codes": None if self.codes is None else self.codes.detach().clone(),
        }

    def _global_weights(self, weights: dict[str, Any]) -> dict[str, Any]:
        """``weights`` with the codes of every process, in global eye order (a collective)."""
        codes = weights["codes"]
        return {**weights, "codes": None if codes is None else self.shard.gather_rows(codes)}

    def _local_weights(self, weights: dict[str, Any], path: Path) -> dict[str, Any]:
        """Undo :meth:`_global_weights`: this process's rows of the codes of ``weights`` (read from ``path``)."""
        return {**weights, "codes": None if weights["codes"] is None else self._local_rows(weights["codes"], path)}

    def _local_rows(self, full: Tensor, path: Path) -> Tensor:
        if self.codes is None:
            raise DataError(f"{path}: holds latent codes, but this run's network takes none")
        expected = (self.shard.total, *self.codes.shape[1:])
        if tuple(full.shape) != expected:
            raise DataError(
                f"{path}: latent codes {tuple(full.shape)} do not match {expected} of this run's training eyes"
            )
        return self.shard.take_rows(full)

    def _map_code_moments(self, optimizer_state: dict[str, Any], rows: Callable[[Tensor], Tensor]) -> dict[str, Any]:
        """``optimizer_state`` with ``rows`` applied to the codes' Adam moments (``[E, L]``)."""
        index = len(self.optimizer.param_groups[0]["params"])
        moments = optimizer_state["state"].get(index)
        if self.codes is None or moments is None:
            return optimizer_state
        mapped = {
            key: rows(value) if isinstance(value, Tensor) and value.dim() == 2 else value
            for key, value in moments.items()
        }
        return {**optimizer_state, "state": {**optimizer_state["state"], index: mapped}}

    def _state(self) -> dict[str, Any]:
        """The checkpoint: every process's codes and code moments in global eye order (a collective)."""
        return {
            "epoch": self.epoch,
            "stopped_early": self.stopped_early,
            "best_loss": self.best_loss,
            "history": self.history,
            "network": self.network.state_dict(),
            "codes": None if self.codes is None else self.shard.gather_rows(self.codes.detach()),
            "optimizer": self._map_code_moments(self.optimizer.state_dict(), self.shard.gather_rows),
            "scheduler": None if self.schedule.scheduler is None else self.schedule.scheduler.state_dict(),
            "early_stopping": asdict(self.early_stopping),
            "best": self._global_weights(self.best_state),
            "rng": rng_states(self.generator),
        }

    def _write(self, name: str, state: dict[str, Any], keep_previous: bool = False) -> None:
        """Rank 0 writes ``state`` to ``checkpoint_dir/name``; every process waits until it is there,
        and every process stops if the write failed (rather than wait for rank 0 at the next collective)."""
        assert self.checkpoint_dir is not None  # written only by runs with a checkpoint folder
        failure: Exception | None = None
        if self.shard.is_main:
            try:
                save_checkpoint(self.checkpoint_dir / name, state, keep_previous=keep_previous)
            except Exception as exc:  # re-raised below, once every process knows
                failure = exc
        if self.shard.any(failure is not None):
            if failure is not None:
                raise failure
            raise DataError(
                f"{self.checkpoint_dir / name}: the first process of the run could not write it (its error "
                "names the cause); the previous checkpoint is kept"
            )

    def _save_best(self) -> None:
        if self.checkpoint_dir is not None:
            self._write(BEST_CHECKPOINT, self._global_weights(self.best_state))

    def _save_last(self) -> None:
        """``last.pt`` (with the best weights inside, so the two never disagree) and ``best.pt``."""
        if self.checkpoint_dir is not None:
            self._save_best()
            self._write(LAST_CHECKPOINT, self._state(), keep_previous=True)

    def all_codes(self) -> Tensor | None:
        """The codes of every process ``[total, L]`` in global eye order (a collective)."""
        return None if self.codes is None else self.shard.gather_rows(self.codes.detach())

    def _resume(self) -> None:
        assert self.checkpoint_dir is not None  # train() resumes only from a checkpoint folder
        path = self.checkpoint_dir / LAST_CHECKPOINT
        state = load_checkpoint(path, self.data.device)
        self.network.load_state_dict(state["network"])
        if self.codes is not None:
            stored = state["codes"]
            if stored is None:
                raise DataError(f"{path}: holds no latent codes; this run trains {self.shard.total}")
            with torch.no_grad():
                self.codes.copy_(self._local_rows(stored, path))
        self.optimizer.load_state_dict(
            self._map_code_moments(state["optimizer"], lambda full: self._local_rows(full, path))
        )
        scheduler = self.schedule.scheduler
        if (scheduler is None) != (state["scheduler"] is None):
            raise DataError(
                f"{path}: written with another TRAINING.LR_SCHEDULE than this config's "
                f"{self.config.TRAINING.LR_SCHEDULE!r}"
            )
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        for key in ("best", "stale"):
            setattr(self.early_stopping, key, state["early_stopping"][key])
        restore_rng_states(state["rng"], self.generator)
        self.epoch, self.best_loss, self.history = state["epoch"], state["best_loss"], state["history"]
        self.stopped_early = bool(state.get("stopped_early", False))  # checkpoints of older runs lack the flag
        self.best_state = self._local_weights(state["best"], path)

    def _summary(self, running: Tensor, steps: int, started: float, heldout: float | None) -> dict[str, float]:
        means = (running / max(steps, 1)).tolist()
        row = {"epoch": float(self.epoch), **dict(zip(LOSS_NAMES, means))}
        if heldout is not None:
            row["heldout"] = heldout
        row.update({"lr": float(self.optimizer.param_groups[0]["lr"]), "seconds": time.perf_counter() - started})
        self.history.append(row)
        if self.checkpoint_dir is not None and self.shard.is_main:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.history)
            atomic_write_text(self.checkpoint_dir / TRAINING_LOG, text.getvalue())
            log_summary(
                self,
                row,
                self.epoch,
                self.checkpoint_dir,
                self.config.SETTINGS.LOGGERS,
                key="SETTINGS.LOGGERS",
                project=self.config.SETTINGS.PROJECT_NAME,
            )
        return row

    def _heldout_loss(self) -> float | None:
        """Mean loss of the held-out B-scans over the eyes of all processes (``None`` without a hold-out)."""
        if self.heldout is None:
            return None
        losses = heldout_losses(
            self.objective,
            self.heldout,
            self.codes,
            self.config.TRAINING.MIXED_PRECISION,
            self.config.micro_batch_points(self.data.device),
        )
        if not self.shard.distributed:
            return float(losses.mean())
        return float(self.shard.sum_(losses.sum().reshape(1))) / self.shard.total

    def _end_epoch(self, loss: float) -> bool:
        """After epoch ``self.epoch`` (1-based, done) with mean loss ``loss`` (the held-out loss
        with a hold-out): keep it if it is the best so far (or the last, with ``keep_last``);
        whether early stopping ends the training."""
        if self.keep_last or loss < self.best_loss:
            self.best_loss = loss
            self.best_state = self._weights()
        return self.early_stopping.update(self.epoch - 1, loss)

    def _check_epoch(self, step_terms: Tensor) -> None:
        """Stop with :class:`TrainingDivergedError` if epoch ``self.epoch + 1`` diverged; ``best.pt``
        then holds the best finite weights and ``last.pt`` stays the last finite checkpoint."""
        weights: list[Tensor] = [*self.network.parameters()]
        if self.codes is not None and not self.shard.distributed:
            weights.append(self.codes)
        elif self.codes is not None:  # NaN where any process holds a non-finite code: every process stops alike
            bad = self.shard.sum_((~torch.isfinite(self.codes)).sum().float().reshape(1))
            weights.append(torch.where(bad > 0, math.nan, 0.0))
        kept = "nothing was written"
        if self.checkpoint_dir is not None:
            last = self.checkpoint_dir / LAST_CHECKPOINT
            kept = f"{self.checkpoint_dir / BEST_CHECKPOINT} holds the weights of epoch {self.best_state['epoch']}" + (
                f", {last} the last finite checkpoint" if last.is_file() else ""
            )
        try:
            check_finite(
                step_terms,
                weights,
                self.description,
                self.epoch + 1,
                "TRAINING.LEARNING_RATE",
                self.config.TRAINING.LEARNING_RATE,
                kept,
            )
        except TrainingDivergedError:
            self._save_best()
            raise

    def train(self, resume: bool = False) -> TrainingOutcome:
        """Run (or continue) the training; afterwards the network and codes hold the kept weights
        (those of the epoch with the lowest mean loss, held-out loss with a hold-out, or of the
        refit on all inputs with ``HOLDOUT_REFIT``)."""
        train = self.config.TRAINING
        if self.checkpoint_dir is not None:
            if self.shard.is_main:
                self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            self.shard.barrier()
            if resume and (self.checkpoint_dir / LAST_CHECKPOINT).is_file():
                self._resume()
        self.network.train()
        outcome = TrainingOutcome(self.epoch, self.best_loss)
        started = time.perf_counter()
        running = torch.zeros(3, device=self.data.device)
        steps = 0
        with (
            stop_on_signals() as stop,
            tqdm(
                total=self.epoch_limit,
                initial=self.epoch,
                desc=self.description,
                unit="epoch",
                leave=False,
                disable=not self.progress,
            ) as bar,
        ):
            while not self.stopped_early and self.epoch < self.epoch_limit:
                epoch_terms = self._run_epoch(stop)
                if epoch_terms is None:
                    outcome.interrupted = True
                    self._save_last()
                    break
                self.epoch += 1
                self.schedule.end_epoch()
                running += epoch_terms
                steps += self.plan.steps_per_epoch
                bar.update(1)
                heldout = self._heldout_loss()
                loss = float(epoch_terms[0]) / self.plan.steps_per_epoch
                self.stopped_early = self._end_epoch(loss if heldout is None else heldout)
                last = self.epoch == self.epoch_limit or self.stopped_early
                if self.epoch % train.EPOCHS_TIL_SUMMARY == 0 or last:
                    row = self._summary(running, steps, started, heldout)
                    running.zero_()
                    steps = 0
                    bar.set_postfix(loss=f"{row['loss']:.4g}")
                if self.epoch % train.CHECKPOINT_EVERY == 0 or last:
                    self._save_last()
        outcome.stopped_early = self.stopped_early
        self.load_best()
        outcome.epochs_done, outcome.best_loss, outcome.history = self.epoch, self.best_loss, self.history
        outcome.chosen_epoch = int(self.best_state["epoch"])
        if self.heldout is not None and train.HOLDOUT_REFIT and not outcome.interrupted:
            outcome.refitted = True
            outcome.interrupted = self._refit(outcome.chosen_epoch, resume)
        return outcome

    def _refit(self, epochs: int, resume: bool) -> bool:
        """``HOLDOUT_REFIT``: train again from the initial weights and codes on all input B-scans
        for ``epochs`` epochs (checkpoints in ``REFIT_DIR``), keep the last epoch and write it to
        ``best.pt``; whether it was interrupted."""
        train = self.config.TRAINING
        config = dataclasses.replace(
            self.config, TRAINING=dataclasses.replace(train, HOLDOUT_BSCANS=0, EARLY_STOPPING_PATIENCE=0)
        )
        self.network.load_state_dict(self.initial_network)
        refit = NetworkTrainer(
            self.network,
            self.all_data,
            config,
            None if self.checkpoint_dir is None else self.checkpoint_dir / REFIT_DIR,
            f"{self.description} (refit on all inputs)",
            self.progress,
            epochs=max(epochs, 1),
            keep_last=True,
            shard=self.shard,
        )
        interrupted = refit.train(resume=resume).interrupted
        if self.codes is not None and refit.codes is not None:
            with torch.no_grad():
                self.codes.copy_(refit.codes)
        if not interrupted and self.checkpoint_dir is not None:
            self._write(BEST_CHECKPOINT, refit._global_weights(refit.best_state))
        return interrupted

    def _run_epoch(self, stop: StopFlag) -> Tensor | None:
        """One epoch of steps: the summed loss terms ``[3]``; ``None`` if a stop was requested
        part-way (the epoch does not count). A non-finite loss or weight raises
        :class:`TrainingDivergedError` (see :meth:`_check_epoch`)."""
        self.source.start_epoch()
        terms = []
        for _ in range(self.plan.steps_per_epoch):
            terms.append(self.step())
            if self.shard.any(stop.requested):  # a stop asked of any process stops them all alike
                return None
        step_terms = torch.stack(terms)
        self._check_epoch(step_terms)
        return step_terms.sum(0)

    def load_best(self) -> None:
        """Put the kept weights and codes into the network and ``codes``."""
        self.network.load_state_dict(self.best_state["network"])
        if self.codes is not None and self.best_state["codes"] is not None:
            with torch.no_grad():
                self.codes.copy_(self.best_state["codes"])
