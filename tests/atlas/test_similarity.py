"""The SSIM term of the latent fit: known answers, and fp32 statistics under bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from atlas_registration.losses import ssim_loss


def _patches():
    generator = torch.Generator().manual_seed(0)
    target = 0.5 + 0.1 * torch.rand(2, 8, 6, 8, generator=generator)
    return target + 0.02 * torch.randn(2, 8, 6, 8, generator=generator), target


def test_identical_patches_have_no_dissimilarity():
    _, target = _patches()
    assert float(ssim_loss(target, target)) == pytest.approx(0.0, abs=1e-6)


def test_noise_raises_the_dissimilarity():
    pred, target = _patches()
    assert float(ssim_loss(pred, target)) > 0.05


def test_ssim_under_bf16_autocast_equals_fp32_of_the_same_values():
    pred, target = _patches()
    pred = pred.bfloat16()  # as the atlas returns it under autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim_loss(pred, target)
    assert mixed.dtype == torch.float32
    assert float(mixed) == pytest.approx(float(ssim_loss(pred.float(), target)), rel=1e-5)
