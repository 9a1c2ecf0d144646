"""Training losses: intensity (MSE, SSIM, both), segmentation (CE, BCE) and the code penalty.

Every loss is computed in fp32 from fp32 inputs, also under bf16 autocast (callers pass
``float()`` network outputs; SSIM switches autocast off for its convolutions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 7
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Normalised 2-D Gaussian ``[1, 1, size, size]``."""
    axis = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    profile = torch.exp(-(axis ** 2) / (2 * sigma ** 2))
    window = profile[:, None] * profile[None, :]
    return (window / window.sum())[None, None]


def ssim_patches(prediction: Tensor, truth: Tensor) -> Tensor:
    """Mean SSIM (data range 1) of ``[P, p, p]`` patch pairs, Gaussian window of up to 7 pixels.

    Always in fp32, autocast or not: the local variances are differences of nearly equal
    means (``E[x^2] - E[x]^2``), which bf16's 8-bit mantissa cannot resolve.
    """
    size = min(SSIM_WINDOW, prediction.shape[-1])
    with torch.autocast(prediction.device.type, enabled=False):
        window = gaussian_window(size, SSIM_SIGMA, prediction.device, torch.float32)
        x, y = prediction.float()[:, None], truth.float()[:, None]
        mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
        var_x = F.conv2d(x * x, window) - mu_x ** 2
        var_y = F.conv2d(y * y, window) - mu_y ** 2
        cov = F.conv2d(x * y, window) - mu_x * mu_y
        ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
            (mu_x ** 2 + mu_y ** 2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
        return ssim.mean()


def reconstruction_loss(prediction: Tensor, truth: Tensor, kind: str) -> Tensor:
    """``MSE``, ``SSIM`` (1 - SSIM) or ``Combi`` (their sum) of ``[P, p, p]`` patches."""
    mse = F.mse_loss(prediction.float(), truth.float())
    if kind == "MSE":
        return mse
    dissimilarity = 1.0 - ssim_patches(prediction, truth)
    return dissimilarity if kind == "SSIM" else mse + dissimilarity


def segmentation_loss(logits: Tensor, labels: Tensor, kind: str) -> Tensor:
    """Cross-entropy (``CE``) or binary cross-entropy on one-hot labels (``BCE``); ``logits [N, C]``."""
    if kind == "CE":
        return F.cross_entropy(logits, labels)
    one_hot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, one_hot)


def code_penalty(codes: Tensor) -> Tensor:
    """Mean squared norm of the latent codes ``[E, L]``."""
    return codes.float().square().sum(-1).mean()
