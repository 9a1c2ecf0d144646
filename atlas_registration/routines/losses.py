"""The registration loss shared by joint training and the per-eye fits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.routines.regularisers import regularisation
from atlas_registration.routines.similarity import ssim_loss


@dataclass(frozen=True)
class LossWeights:
    """Weights of the registration loss terms (0 switches a term off)."""

    mse: float = 1.0
    seg: float = 0.0
    ssim: float = 0.0
    reg: float = 0.01
    reg_type: str = "jacobian"
    reg_points: int = 2048


def registration_loss(atlas: AtlasINR, displacement_fn: Callable[[torch.Tensor], torch.Tensor],
                      batch: dict[str, torch.Tensor], weights: LossWeights) -> dict[str, torch.Tensor]:
    """Terms of the loss on a batch of patches.

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
    coords = batch["coords"].reshape(patch[0], -1, 3)
    intensity, logits = atlas(coords + displacement_fn(coords))
    terms = {"mse": F.mse_loss(intensity.reshape(patch), batch["intensity"])}
    total = weights.mse * terms["mse"]
    if weights.seg > 0:
        terms["ce"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1))
        total = total + weights.seg * terms["ce"]
    if weights.ssim > 0:
        terms["ssim"] = ssim_loss(intensity.reshape(patch), batch["intensity"])
        total = total + weights.ssim * terms["ssim"]
    if weights.reg > 0:
        terms["reg"] = regularisation(displacement_fn, coords, weights.reg_type, weights.reg_points)
        total = total + weights.reg * terms["reg"]
    terms["loss"] = total
    return terms
