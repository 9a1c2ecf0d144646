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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from retina_data.labels import FLUID_LABEL, RETINA_LABELS
from retina_data.surface_distance import (
    boundary_depths,
    boundary_errors_per_ascan,
    boundary_surface_errors,
    ilm_assd,
    summarise_boundary_errors,
    surface_distances,
)

__all__ = [
    "RETINA_WITH_FLUID",
    "boundary_depths",
    "boundary_errors_per_ascan",
    "boundary_surface_errors",
    "confusion_matrix",
    "confusion_per_bscan",
    "dice_from_confusion",
    "dice_per_class",
    "fluid_dice",
    "foreground_mean",
    "group_dice",
    "ilm_assd",
    "lpips_available",
    "lpips_distance",
    "lpips_per_bscan",
    "mae",
    "mae_per_bscan",
    "mean_dice",
    "mean_ignoring_nan",
    "mse",
    "mse_per_bscan",
    "psnr",
    "psnr_from_mse",
    "retina_dice",
    "ssim",
    "ssim_per_bscan",
    "summarise_boundary_errors",
    "surface_distances",
]

_CONFUSION_CHUNK = 1 << 23
"""Voxels counted per ``bincount`` call: bounds the index buffer to 64 MiB."""


def _as_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match truth shape {truth.shape}")
    return pred, truth


def _error_pair(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    pred, truth = _as_pair(pred, truth)
    return pred.astype(np.float64) - truth.astype(np.float64)


def mse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error over all voxels of ``pred`` and ``truth`` (same shape)."""
    return float(np.mean(np.square(_error_pair(pred, truth))))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error over all voxels of ``pred`` and ``truth`` (same shape)."""
    return float(np.mean(np.abs(_error_pair(pred, truth))))


def mse_per_bscan(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error of each B-scan ``[D]`` of ``[H, W, D]`` volumes."""
    return np.mean(np.square(_error_pair(pred, truth)), axis=(0, 1))


def mae_per_bscan(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean absolute error of each B-scan ``[D]`` of ``[H, W, D]`` volumes."""
    return np.mean(np.abs(_error_pair(pred, truth)), axis=(0, 1))


def psnr_from_mse(error: float, data_range: float = 1.0) -> float:
    """``10 log10(data_range**2 / error)`` in dB; ``inf`` for zero error."""
    if error == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / error))


def psnr(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range**2 / MSE)``; ``inf`` when equal."""
    return psnr_from_mse(mse(pred, truth), data_range)


def ssim_per_bscan(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """2-D structural similarity of each B-scan ``[H, W]`` of ``[H, W, D]`` volumes.

    scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window,
    K1 = 0.01, K2 = 0.03) on each slice, as scikit-image itself does for the channels of a
    multi-channel image.

    Args:
        pred: ``[H, W, D]``; H and W must be at least 7.
        truth: same shape.
        data_range: intensity range of the data.

    Returns:
        ``[D]`` SSIM values, 1.0 for identical B-scans.
    """
    pred, truth = _as_pair(pred, truth)
    if pred.ndim != 3:
        raise ValueError(f"expected [H, W, D] volumes, got shape {pred.shape}")
    return np.array(
        [
            structural_similarity(
                pred[:, :, d].astype(np.float64), truth[:, :, d].astype(np.float64), data_range=data_range
            )
            for d in range(pred.shape[2])
        ]
    )


def ssim(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity: the mean over B-scans of :func:`ssim_per_bscan`.

    Args:
        pred: ``[H, W, D]`` volume or one ``[H, W]`` B-scan; H and W must be at least 7.
        truth: same shape.
        data_range: intensity range of the data.

    Returns:
        Mean SSIM, 1.0 for identical inputs.
    """
    pred, truth = _as_pair(pred, truth)
    if pred.ndim == 2:
        pred, truth = pred[:, :, None], truth[:, :, None]
    return float(ssim_per_bscan(pred, truth, data_range).mean())


def _check_label_range(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> None:
    for name, labels in (("predicted", pred), ("true", truth)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} labels span {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}")


def _grouped_confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrices ``[G, C, C]`` of the ``G`` columns of ``[N, G]`` label arrays."""
    _check_label_range(pred, truth, num_classes)
    pairs = num_classes * num_classes
    groups = pred.shape[1]
    offsets = np.arange(groups, dtype=np.int64) * pairs
    counts = np.zeros(groups * pairs, dtype=np.int64)
    rows = max(1, _CONFUSION_CHUNK // max(groups, 1))
    for start in range(0, pred.shape[0], rows):
        codes = truth[start : start + rows].astype(np.int64) * num_classes + pred[start : start + rows] + offsets
        counts += np.bincount(codes.reshape(-1), minlength=groups * pairs)
    return counts.reshape(groups, num_classes, num_classes)


def confusion_matrix(pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Voxel counts ``[C, C]`` (row = true label, column = predicted label) of any-shape labels.

    Raises:
        ValueError: a label is negative or not below ``num_classes``.
    """
    pred, truth = _as_pair(pred_labels, truth_labels)
    return _grouped_confusion(pred.reshape(-1, 1), truth.reshape(-1, 1), num_classes)[0]


def confusion_per_bscan(pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrix of each B-scan ``[D, C, C]`` of ``[H, W, D]`` label volumes."""
    pred, truth = _as_pair(pred_labels, truth_labels)
    if pred.ndim != 3:
        raise ValueError(f"expected [H, W, D] label volumes, got shape {pred.shape}")
    depth = pred.shape[2]
    return _grouped_confusion(pred.reshape(-1, depth), truth.reshape(-1, depth), num_classes)


def dice_from_confusion(counts: np.ndarray) -> np.ndarray:
    """Dice ``[C]`` of every class from a confusion matrix ``[C, C]``; NaN for absent classes."""
    overlap = np.diag(counts).astype(np.float64)
    sizes = counts.sum(axis=0) + counts.sum(axis=1)
    dice = np.full(counts.shape[0], np.nan)
    np.divide(2.0 * overlap, sizes, out=dice, where=sizes > 0)
    return dice


def group_dice(counts: np.ndarray, classes: Sequence[int]) -> float:
    """Dice of the union of ``classes`` against all other labels, from a confusion matrix ``[C, C]``.

    Classes beyond ``C`` are ignored; NaN when the union is empty in both volumes.
    """
    chosen = np.zeros(counts.shape[0], dtype=bool)
    chosen[[c for c in classes if c < counts.shape[0]]] = True
    size = counts[chosen].sum() + counts[:, chosen].sum()
    return float(2.0 * counts[np.ix_(chosen, chosen)].sum() / size) if size else float("nan")


def dice_per_class(pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every class ``0 .. C-1``.

    Args:
        pred_labels: predicted labels, any shape, integer in ``[0, C)``.
        truth_labels: true labels, same shape.
        num_classes: ``C``.

    Returns:
        ``[C]`` float64; NaN where a class is absent from both prediction and truth.
    """
    return dice_from_confusion(confusion_matrix(pred_labels, truth_labels, num_classes))


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


RETINA_WITH_FLUID: tuple[int, ...] = (*RETINA_LABELS, FLUID_LABEL)
"""Labels counted as retina by :func:`retina_dice`: the layers 1..11 and fluid."""


def _pathology_confusion(pred_labels: np.ndarray, truth_labels: np.ndarray) -> np.ndarray:
    pred, truth = _as_pair(pred_labels, truth_labels)
    num_classes = max(FLUID_LABEL, int(pred.max(initial=0)), int(truth.max(initial=0))) + 1
    return confusion_matrix(pred, truth, num_classes)


def retina_dice(pred_labels: np.ndarray, truth_labels: np.ndarray) -> float:
    """Dice of the whole retina: labels 1..11 plus fluid (13) against everything else."""
    return group_dice(_pathology_confusion(pred_labels, truth_labels), RETINA_WITH_FLUID)


def fluid_dice(pred_labels: np.ndarray, truth_labels: np.ndarray) -> float:
    """Dice of the fluid class (label 13); NaN when neither volume holds fluid."""
    return group_dice(_pathology_confusion(pred_labels, truth_labels), [FLUID_LABEL])


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


def lpips_per_bscan(
    pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0, batch_size: int = 8
) -> np.ndarray | None:
    """LPIPS (AlexNet) distance of each B-scan ``[D]``, or ``None`` when LPIPS is not available offline.

    Args:
        pred: ``[H, W, D]`` volume in ``[0, data_range]``.
        truth: same shape.
        data_range: intensity range, mapped to LPIPS's ``[-1, 1]``.
        batch_size: B-scans per network call.
    """
    pred, truth = _as_pair(pred, truth)
    model = _lpips_model()
    if model is None:
        return None
    import torch

    device = next(model.parameters()).device

    def as_batch(volume: np.ndarray, start: int) -> torch.Tensor:
        slices = np.moveaxis(volume[:, :, start : start + batch_size], 2, 0)[:, None]  # [b, 1, H, W]
        tensor = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)).to(device)
        return (tensor * (2.0 / data_range) - 1.0).expand(-1, 3, -1, -1)

    with torch.inference_mode():
        distances = [
            model(as_batch(pred, start), as_batch(truth, start)).reshape(-1).cpu().numpy()
            for start in range(0, pred.shape[2], batch_size)
        ]
    return np.concatenate(distances).astype(np.float64)


def lpips_distance(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0) -> float | None:
    """Mean LPIPS over the B-scans of ``[H, W, D]`` volumes, or ``None`` when not available offline."""
    distances = lpips_per_bscan(pred, truth, data_range)
    return None if distances is None else float(distances.mean())
