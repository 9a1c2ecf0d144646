"""Image similarity losses on patches ``[B, h, w, d]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
