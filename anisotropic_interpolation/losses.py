"""Training losses per image of a step: intensity (MSE, SSIM, Combi), segmentation and the code penalty.

An *image* is what one step compares as a picture: a whole B-scan (``SAMPLING: bscan``) or a
patch (``patches``). Every function returns one value per image (or per point), so callers
can average over a step's images (training) or sum per eye (independent test-time fits).
Every loss is computed in fp32 from fp32 inputs, also under bf16 autocast (callers pass
``float()`` network outputs; SSIM switches autocast off for its convolutions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from anisotropic_interpolation.config import CodePenalty, LossRecon, LossSeg, SsimWindow

SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
LOG_FLOOR = -100.0
"""Lower bound of the logarithms in the binary cross-entropy (as ``torch.nn.BCELoss`` clamps)."""


def gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Normalised 2-D Gaussian ``[1, 1, size, size]``."""
    axis = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    profile = torch.exp(-(axis**2) / (2 * sigma**2))
    window = profile[:, None] * profile[None, :]
    return (window / window.sum())[None, None]


def ssim_per_image(prediction: Tensor, truth: Tensor, window: SsimWindow) -> Tensor:
    """Mean SSIM (data range 1) of each of ``P`` image pairs ``[P, h, w]`` -> ``[P]``.

    ``gaussian11_zero_padded``: an 11 x 11 Gaussian (sigma 1.5) over the image padded with
    zeros, the SSIM map averaged over every pixel (the reference). ``gaussian7_valid``: a
    7 x 7 Gaussian (at most the image side), the map over the valid positions only.

    Always in fp32, autocast or not: the local variances are differences of nearly equal
    means (``E[x^2] - E[x]^2``), which bf16's 8-bit mantissa cannot resolve.
    """
    if window == "gaussian11_zero_padded":
        size, padding = 11, 5
    else:
        size = min(7, prediction.shape[-2], prediction.shape[-1])
        padding = 0
    with torch.autocast(prediction.device.type, enabled=False):
        kernel = gaussian_window(size, SSIM_SIGMA, prediction.device, torch.float32)
        x, y = prediction.float()[:, None], truth.float()[:, None]

        def local_mean(image: Tensor) -> Tensor:
            return F.conv2d(image, kernel, padding=padding)

        mu_x, mu_y = local_mean(x), local_mean(y)
        var_x = local_mean(x * x) - mu_x**2
        var_y = local_mean(y * y) - mu_y**2
        cov = local_mean(x * y) - mu_x * mu_y
        ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
            (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
        )
        return ssim.mean(dim=(1, 2, 3))


def reconstruction_loss(
    prediction: Tensor,
    truth: Tensor,
    kind: LossRecon,
    ssim_weight: float = 0.1,
    window: SsimWindow = "gaussian11_zero_padded",
) -> Tensor:
    """Per image ``[P]`` of ``[P, h, w]`` pairs: ``MSE``, ``SSIM`` (1 - SSIM) or ``Combi``
    (MSE + ``ssim_weight`` (1 - SSIM))."""
    mse = (prediction.float() - truth.float()).square().mean(dim=(1, 2))
    if kind == "MSE":
        return mse
    dissimilarity = 1.0 - ssim_per_image(prediction, truth, window)
    return dissimilarity if kind == "SSIM" else mse + ssim_weight * dissimilarity


def segmentation_loss(logits: Tensor, labels: Tensor, kind: LossSeg) -> Tensor:
    """Per point ``[N]`` of ``logits [N, C]`` and ``labels [N]``.

    ``softmax_BCE``: binary cross-entropy of the softmax probabilities against the one-hot
    labels, averaged over the classes (the logarithms clamped at -100 like ``BCELoss``);
    ``CE``: cross-entropy of the logits.
    """
    logits = logits.float()
    if kind == "CE":
        return F.cross_entropy(logits, labels, reduction="none")
    log_p = torch.log_softmax(logits, dim=-1)
    log_not_p = torch.log1p(-log_p.exp())
    one_hot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return -(one_hot * log_p.clamp(min=LOG_FLOOR) + (1 - one_hot) * log_not_p.clamp(min=LOG_FLOOR)).mean(-1)


def code_penalty(codes: Tensor, image_eye: Tensor, kind: CodePenalty) -> Tensor:
    """Penalty ``[P]`` of each image's eye code; ``codes [E, L]``, ``image_eye [P]``.

    ``eye_mean_square``: ``mean(z²)`` over the entries of the image's eye code;
    ``all_codes_squared_norm``: ``|z|²`` averaged over all ``E`` codes (the same for every image).
    """
    if kind == "eye_mean_square":
        return codes[image_eye].float().square().mean(-1)
    return codes.float().square().sum(-1).mean().expand(image_eye.shape[0])
