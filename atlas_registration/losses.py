"""The registration loss shared by joint training and the per-eye fits, its terms (label, SSIM on
patches ``[B, h, w, d]``, L1 of the displacement) and the atlas's label term."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.regularisers import regularisation


@dataclass(frozen=True)
class LossWeights:
    """Weights of the registration loss terms (0 switches a term off) and the kinds of two of them."""

    mse: float = 1.0
    seg: float = 0.0
    ssim: float = 0.0
    reg: float = 0.01
    reg_type: str = "l1"
    reg_points: int = 2048
    seg_loss: str = "bce"


def label_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The label term of ``logits [..., K]`` against integer ``labels [...]``, in fp32.

    ``bce`` (the reference): binary cross-entropy of ``softmax(logits)`` against the one-hot
    labels, averaged over points and classes (log clamped at -100, as ``nn.BCELoss``); ``ce``:
    categorical cross-entropy of the logits.
    """
    logits = logits.reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1)
    with torch.autocast(logits.device.type, enabled=False):
        if kind == "ce":
            return F.cross_entropy(logits.float(), labels)
        one_hot = F.one_hot(labels, logits.shape[-1]).float()
        return F.binary_cross_entropy(torch.softmax(logits.float(), dim=-1), one_hot)


_C1, _C2 = 0.01**2, 0.03**2


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int = 3) -> torch.Tensor:
    """``1 - SSIM`` with a uniform ``window`` (cube, clipped to the patch) on ``[B, h, w, d]`` patches in [0, 1].

    Always in fp32, autocast or not: the local variances are differences of nearly equal
    means, which bf16 cannot resolve.
    """
    k = [min(window, n) for n in pred.shape[1:]]
    with torch.autocast(pred.device.type, enabled=False):
        x, y = pred.float().unsqueeze(1), target.float().unsqueeze(1)
        mean_x, mean_y = F.avg_pool3d(x, k, 1), F.avg_pool3d(y, k, 1)
        var_x = F.avg_pool3d(x * x, k, 1) - mean_x**2
        var_y = F.avg_pool3d(y * y, k, 1) - mean_y**2
        cov = F.avg_pool3d(x * y, k, 1) - mean_x * mean_y
        ssim = ((2 * mean_x * mean_y + _C1) * (2 * cov + _C2)) / ((mean_x**2 + mean_y**2 + _C1) * (var_x + var_y + _C2))
        return 1.0 - ssim.mean()


def displacement_l1(displacement: torch.Tensor) -> torch.Tensor:
    """Mean ``|u|`` over every point and component of ``displacement [..., 3]`` (the reference's
    ``L1Loss(u, 0)``), in fp32."""
    return displacement.float().abs().mean()


def registration_loss(
    atlas: AtlasINR,
    displacement_fn: Callable[[torch.Tensor], torch.Tensor],
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """Terms of the loss on a batch of patches.

    The atlas is read at ``x + u(x)`` formed in fp32 (see ``architectures/siren.py``).

    Args:
        atlas: the atlas INR.
        displacement_fn: ``coords [B, N, 3]`` -> ``u [B, N, 3]`` for the batch's eyes.
        batch: ``coords [B, h, w, d, 3]``, ``intensity [B, h, w, d]`` and, for ``seg > 0``,
            ``labels [B, h, w, d]``.
        weights: term weights.

    Returns:
        ``{"loss", "mse", ...}``: the weighted total and each active term.
    """
    patch = batch["intensity"].shape
    coords = batch["coords"].reshape(patch[0], -1, 3).float()
    displacement = displacement_fn(coords)
    intensity, logits = atlas(coords + displacement.float())
    terms = {"mse": F.mse_loss(intensity.float().reshape(patch), batch["intensity"])}
    total = weights.mse * terms["mse"]
    if weights.seg > 0:
        terms[weights.seg_loss] = label_loss(logits, batch["labels"], weights.seg_loss)
        total = total + weights.seg * terms[weights.seg_loss]
    if weights.ssim > 0:
        terms["ssim"] = ssim_loss(intensity.reshape(patch), batch["intensity"])
        total = total + weights.ssim * terms["ssim"]
    if weights.reg > 0:
        terms["reg"] = (
            displacement_l1(displacement)
            if weights.reg_type == "l1"
            else regularisation(displacement_fn, coords, weights.reg_type, weights.reg_points)
        )
        total = total + weights.reg * terms["reg"]
    terms["loss"] = total
    return terms
