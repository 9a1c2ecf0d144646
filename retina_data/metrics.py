"""Image and segmentation metrics shared by both script trees.

Plain functions on numpy arrays. Volumes are ``[H, W, D]`` (depth, position along the
B-scan, B-scan index); any shape works for the voxel-wise metrics. Conventions:

- Intensity metrics (:func:`psnr`, :func:`ssim`, :func:`mae`, :func:`mse`) use the
  intensity range ``data_range`` (1.0 for our ``[0, 1]`` OCT); PSNR is ``inf`` for
  identical images.
- Overlap metrics return NaN for a class absent from both prediction and truth, and the
  means ignore NaN.
- Surface distances in mm live in :mod:`retina_data.surface_distance` and are offered
  here too: :func:`surface_distances` (per-class surfaces, MONAI) and
  :func:`boundary_surface_errors` (layer boundaries along the A-scans; the one the
  interpolation tables report).
- :func:`lpips_distance` runs only when the optional ``lpips`` package and all its weights
  are already on disk; nothing is ever downloaded.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from retina_data.labels import FLUID_LABEL, RETINA_LABELS
from retina_data.surface_distance import boundary_depths, boundary_surface_errors, ilm_assd, surface_distances

__all__ = [
    "boundary_depths", "boundary_surface_errors", "confusion_matrix", "dice_per_class", "fluid_dice",
    "foreground_mean", "ilm_assd", "lpips_available", "lpips_distance", "mae", "mask_dice", "mean_dice",
    "mean_ignoring_nan", "mse", "psnr", "retina_dice", "ssim", "surface_distances",
]

_CONFUSION_CHUNK = 1 << 24
"""Voxels counted per ``bincount`` call: bounds the index buffer to 128 MiB."""


def _as_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match truth shape {truth.shape}")
    return pred, truth


def mse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error over all voxels of ``pred`` and ``truth`` (same shape)."""
    pred, truth = _as_pair(pred, truth)
    return float(np.mean(np.square(pred.astype(np.float64) - truth.astype(np.float64))))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error over all voxels of ``pred`` and ``truth`` (same shape)."""
    pred, truth = _as_pair(pred, truth)
    return float(np.mean(np.abs(pred.astype(np.float64) - truth.astype(np.float64))))


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)``; ``inf`` when equal."""
    error = mse(pred, truth)
    if error == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / error))


def ssim(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity: the mean over B-scans of the 2-D SSIM of each ``[H, W]`` slice.

    scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window,
    K1 = 0.01, K2 = 0.03), applied to each B-scan (the last axis is treated as channels).

    Args:
        pred: ``[H, W, D]`` volume or one ``[H, W]`` B-scan; H and W must be at least 7.
        truth: same shape.
        data_range: intensity range of the data.

    Returns:
        Mean SSIM, 1.0 for identical inputs.
    """
    pred, truth = _as_pair(pred, truth)
    if pred.ndim not in (2, 3):
        raise ValueError(f"SSIM expects [H, W] or [H, W, D], got shape {pred.shape}")
    channel_axis = 2 if pred.ndim == 3 else None
    return float(structural_similarity(pred.astype(np.float64), truth.astype(np.float64),
                                       data_range=data_range, channel_axis=channel_axis))


def confusion_matrix(pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Voxel counts ``[C, C]``: row = true label, column = predicted label.

    Raises:
        ValueError: a label is negative or not below ``num_classes``.
    """
    pred, truth = _as_pair(pred_labels, truth_labels)
    for name, labels in (("predicted", pred), ("true", truth)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} labels span {labels.min()}..{labels.max()}, "
                             f"expected 0..{num_classes - 1}")
    dtype = np.uint16 if num_classes <= 255 else np.int64
    codes = (truth.astype(dtype) * num_classes + pred.astype(dtype)).reshape(-1)
    counts = np.zeros(num_classes * num_classes, dtype=np.int64)
    for start in range(0, codes.size, _CONFUSION_CHUNK):
        counts += np.bincount(codes[start:start + _CONFUSION_CHUNK], minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def dice_per_class(pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every class ``0 .. C-1``.

    Args:
        pred_labels: predicted labels, any shape, integer in ``[0, C)``.
        truth_labels: true labels, same shape.
        num_classes: ``C``.

    Returns:
        ``[C]`` float64; NaN where a class is absent from both prediction and truth.
    """
    counts = confusion_matrix(pred_labels, truth_labels, num_classes)
    overlap = np.diag(counts).astype(np.float64)
    sizes = counts.sum(axis=0) + counts.sum(axis=1)
    dice = np.full(num_classes, np.nan)
    np.divide(2.0 * overlap, sizes, out=dice, where=sizes > 0)
    return dice


def mean_ignoring_nan(values: np.ndarray) -> float:
    """Mean of ``values [N]`` ignoring NaN; NaN (without a warning) if all are NaN."""
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    return float(values[valid].mean()) if valid.any() else float("nan")


def foreground_mean(per_class: np.ndarray) -> float:
    """Mean of ``per_class[1:]`` (classes 1..C-1) ignoring NaN; NaN if all are NaN."""
    return mean_ignoring_nan(np.asarray(per_class)[1:])


def mean_dice(pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int) -> float:
    """Mean Dice over the foreground classes ``1 .. C-1``, ignoring classes absent from both."""
    return foreground_mean(dice_per_class(pred_labels, truth_labels, num_classes))


def mask_dice(pred_mask: np.ndarray, truth_mask: np.ndarray) -> float:
    """Dice of two boolean masks (same shape); NaN when both are empty."""
    pred_mask, truth_mask = _as_pair(pred_mask, truth_mask)
    size = int(np.count_nonzero(pred_mask)) + int(np.count_nonzero(truth_mask))
    if size == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(pred_mask & truth_mask)) / size


def retina_dice(pred_labels: np.ndarray, truth_labels: np.ndarray) -> float:
    """Dice of the whole retina: labels 1..11 plus fluid (13) against everything else."""
    retina = np.array((*RETINA_LABELS, FLUID_LABEL))
    return mask_dice(np.isin(pred_labels, retina), np.isin(truth_labels, retina))


def fluid_dice(pred_labels: np.ndarray, truth_labels: np.ndarray) -> float:
    """Dice of the fluid class (label 13); NaN when neither volume holds fluid."""
    return mask_dice(np.asarray(pred_labels) == FLUID_LABEL, np.asarray(truth_labels) == FLUID_LABEL)


def _alexnet_checkpoint(torchvision: Any) -> str:
    """File name of torchvision's ImageNet AlexNet weights, which LPIPS builds on."""
    return torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


@functools.cache
def _lpips_model() -> Any:
    """The LPIPS (AlexNet) network when the package and all weights are on disk, else ``None``."""
    try:
        import lpips
        import torch
        import torchvision
    except ImportError:
        return None
    bundled = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    backbone = Path(torch.hub.get_dir()) / "checkpoints" / _alexnet_checkpoint(torchvision)
    if not (bundled.is_file() and backbone.is_file()):
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return lpips.LPIPS(net="alex", verbose=False).to(device).eval()


def lpips_available() -> bool:
    """Whether :func:`lpips_distance` can run offline (package and weights present)."""
    return _lpips_model() is not None


def lpips_distance(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0,
                   batch_size: int = 8) -> float | None:
    """LPIPS (AlexNet) averaged over B-scans, or ``None`` when LPIPS is not available offline.

    Args:
        pred: ``[H, W, D]`` volume in ``[0, data_range]``.
        truth: same shape.
        data_range: intensity range, mapped to LPIPS's ``[-1, 1]``.
        batch_size: B-scans per network call.

    Returns:
        Mean LPIPS distance over the ``D`` B-scans (0 for identical inputs), or ``None``.
    """
    pred, truth = _as_pair(pred, truth)
    model = _lpips_model()
    if model is None:
        return None
    import torch

    device = next(model.parameters()).device

    def as_batch(volume: np.ndarray, start: int) -> torch.Tensor:
        slices = np.moveaxis(volume[:, :, start:start + batch_size], 2, 0)[:, None]  # [b, 1, H, W]
        tensor = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)).to(device)
        return (tensor * (2.0 / data_range) - 1.0).expand(-1, 3, -1, -1)

    total = 0.0
    with torch.inference_mode():
        for start in range(0, pred.shape[2], batch_size):
            total += float(model(as_batch(pred, start), as_batch(truth, start)).sum())
    return total / pred.shape[2]
