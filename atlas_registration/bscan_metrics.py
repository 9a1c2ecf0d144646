"""The paper's registration metrics: 2-D, per B-scan, averaged over blocks of B-scans.

The reference code scores a registered eye B-scan by B-scan (``[H, W]`` slices of an
``[H, W, D]`` volume):

- Dice of every class ``0..C-1`` in that B-scan, where a class absent from both the
  prediction and the truth counts 1.0; the B-scan's Dice is the mean over classes 1..C-1;
- MONAI ``SSIMMetric`` in 2-D (11 x 11 Gaussian window, sigma 1.5, data range 1);
- MONAI's average surface distance (symmetric) of each class 1..C-1 (computed here the way
  MONAI computes it, :func:`assd_per_bscan`) with the in-plane spacing ``(dH, dW)`` (the
  reference passes ``(6/496, 6/512)`` mm whatever the eye), reported in µm. MONAI gives NaN for a class absent from both slices and ``inf`` for one
  absent from one slice only; the B-scan's ASSD is the mean over the classes with a finite
  distance (the reference does not say what it does with those; this is our reading).

Per B-scan values are averaged within blocks of ``block`` consecutive B-scans (the
reference predicts and scores in blocks of 8), then over the blocks; the caller averages
over eyes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from retina_data.metrics import confusion_per_bscan

REFERENCE_SPACING_HW_MM: tuple[float, float] = (6.0 / 496.0, 6.0 / 512.0)
"""The in-plane spacing (dH, dW) in mm that the reference passes to MONAI's surface distance."""

BLOCK_BSCANS = 8
"""Consecutive B-scans the reference scores together."""

SSIM_WINDOW = 11
"""Side of MONAI's Gaussian SSIM window (sigma 1.5)."""


def _check_volumes(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"expected two [H, W, D] volumes of one shape, got {pred.shape} and {truth.shape}")


def dice_per_bscan(pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of every class in every B-scan, ``[D, C]``; a class absent from both slices is 1.0.

    Args:
        pred_labels: ``[H, W, D]`` integer labels in ``0..C-1``.
        truth_labels: same shape.
        num_classes: ``C``.
    """
    _check_volumes(pred_labels, truth_labels)
    counts = confusion_per_bscan(pred_labels, truth_labels, num_classes)  # [D, C, C]
    overlap = np.diagonal(counts, axis1=1, axis2=2).astype(np.float64)
    sizes = counts.sum(axis=1) + counts.sum(axis=2)
    dice = np.ones(overlap.shape)
    np.divide(2.0 * overlap, sizes, out=dice, where=sizes > 0)
    return dice


def ssim_per_bscan(pred: np.ndarray, truth: np.ndarray, data_range: float = 1.0, chunk: int = 64) -> np.ndarray:
    """MONAI's 2-D SSIM (11 x 11 Gaussian, sigma 1.5) of every B-scan, ``[D]``.

    Args:
        pred: ``[H, W, D]`` intensities.
        truth: same shape.
        data_range: intensity range (1 for our ``[0, 1]`` OCT).
        chunk: B-scans per MONAI call.

    Returns:
        ``[D]`` SSIM values; NaN when a B-scan is smaller than the 11 x 11 window.
    """
    from monai.metrics import SSIMMetric  # 3 s import

    _check_volumes(pred, truth)
    if min(pred.shape[:2]) < SSIM_WINDOW:
        return np.full(pred.shape[2], np.nan)
    metric = SSIMMetric(
        spatial_dims=2,
        data_range=data_range,
        kernel_type="gaussian",
        win_size=SSIM_WINDOW,
        kernel_sigma=1.5,
        reduction="none",
    )

    def slices(volume: np.ndarray, start: int) -> torch.Tensor:
        part = np.moveaxis(volume[:, :, start : start + chunk], 2, 0)[:, None]  # [b, 1, H, W]
        return torch.from_numpy(np.ascontiguousarray(part, dtype=np.float32))

    def values(start: int) -> np.ndarray:
        ssim = metric(slices(pred, start), slices(truth, start))
        assert isinstance(ssim, torch.Tensor)  # a tensor batch in, one tensor of values out
        return ssim.reshape(-1).numpy()

    return np.concatenate([values(start) for start in range(0, pred.shape[2], chunk)]).astype(np.float64)


BSCAN_CROSS = ndimage.generate_binary_structure(2, 1)[:, :, None]
"""The 2-D cross (4-neighbourhood) of each B-scan as a 3-D structure ``[3, 3, 1]``: eroding an
``[H, W, D]`` mask with it erodes every B-scan on its own, as MONAI's per-slice erosion does."""


def bscan_edges(mask: np.ndarray) -> np.ndarray:
    """The edge pixels of every B-scan of ``mask [H, W, D]`` (bool): the mask minus its 2-D erosion
    (4-neighbourhood, outside the image counting as background), MONAI's ``get_mask_edges``."""
    return mask & ~ndimage.binary_erosion(mask, structure=BSCAN_CROSS, border_value=0)


def _symmetric_mean_distance(pred_points: np.ndarray, truth_points: np.ndarray) -> float:
    """Mean of the nearest-neighbour distances both ways between two point sets ``[n, 2]`` (mm)."""
    if len(pred_points) == 0 and len(truth_points) == 0:
        return float("nan")
    if len(pred_points) == 0 or len(truth_points) == 0:
        return float("inf")
    to_truth = cKDTree(truth_points).query(pred_points, k=1)[0]
    to_pred = cKDTree(pred_points).query(truth_points, k=1)[0]
    return float(np.concatenate([to_truth, to_pred]).astype(np.float32).mean(dtype=np.float64))


def assd_per_bscan(
    pred_labels: np.ndarray, truth_labels: np.ndarray, num_classes: int, spacing_hw_mm: Sequence[float]
) -> np.ndarray:
    """Symmetric average surface distance (mm) of classes ``1..C-1`` in every B-scan, ``[D, C-1]``.

    What MONAI's ``compute_average_surface_distance(include_background=False, symmetric=True)``
    computes on the one-hot slices with spacing ``(dH, dW)``: the edges of each class's mask
    (:func:`bscan_edges`), the exact Euclidean distance from every edge pixel of one slice to the
    nearest edge pixel of the other (a KD-tree, as MONAI on the CPU), both ways, averaged; NaN where
    a class is absent from both slices, ``inf`` where it is absent from one of them. Computed here
    with the edges of all B-scans in one erosion per class, without MONAI's per-slice tensor
    conversions (which cost ~30 ms per B-scan).

    Args:
        pred_labels: ``[H, W, D]`` integer labels in ``0..C-1``.
        truth_labels: same shape.
        num_classes: ``C``.
        spacing_hw_mm: ``(dH, dW)`` in mm.
    """
    _check_volumes(pred_labels, truth_labels)
    if len(spacing_hw_mm) != 2:
        raise ValueError(f"in-plane spacing must be (dH, dW), got {spacing_hw_mm}")
    scale = np.asarray([float(s) for s in spacing_hw_mm], dtype=np.float64)
    assd = np.empty((pred_labels.shape[2], num_classes - 1))
    for k in range(1, num_classes):
        pred_edges, truth_edges = bscan_edges(pred_labels == k), bscan_edges(truth_labels == k)
        for d in range(pred_labels.shape[2]):
            assd[d, k - 1] = _symmetric_mean_distance(
                np.argwhere(pred_edges[:, :, d]) * scale, np.argwhere(truth_edges[:, :, d]) * scale
            )
    return assd


def finite_mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the finite entries along ``axis`` (NaN where there are none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    counts = finite.sum(axis=axis)
    sums = np.where(finite, values, 0.0).sum(axis=axis)
    return np.divide(sums, counts, out=np.full(np.shape(counts), np.nan), where=counts > 0)


def block_mean(per_bscan: np.ndarray, block: int = BLOCK_BSCANS) -> float:
    """Mean over blocks of ``block`` consecutive B-scans of each block's mean (finite values only).

    ``per_bscan [D]``; the last block may be shorter. NaN when no value is finite.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1 B-scan, got {block}")
    per_bscan = np.asarray(per_bscan, dtype=np.float64)
    means = np.array([finite_mean(per_bscan[start : start + block]) for start in range(0, per_bscan.size, block)])
    return float(finite_mean(means)) if means.size else float("nan")


def reference_metrics(
    warped_labels: np.ndarray,
    target_labels: np.ndarray,
    num_classes: int,
    spacing_hw_mm: Sequence[float],
    warped_intensity: np.ndarray | None = None,
    target_intensity: np.ndarray | None = None,
    block: int = BLOCK_BSCANS,
) -> dict[str, float]:
    """The paper's metric row of one registered eye (module docstring).

    Args:
        warped_labels: atlas labels in the eye ``[H, W, D]``, values in ``0..C-1``.
        target_labels: the eye's labels, same shape.
        num_classes: ``C`` (10 with the paper's classes).
        spacing_hw_mm: ``(dH, dW)`` in mm for the surface distance.
        warped_intensity, target_intensity: ``[H, W, D]`` for ``ssim`` (both or neither).
        block: B-scans per block.

    Returns:
        ``dice_<k>`` per class ``0..C-1``, ``dice_mean`` (classes 1..C-1), ``assd_um`` and,
        with intensities, ``ssim``; every value a mean over blocks of per-B-scan values.
    """
    dice = dice_per_bscan(warped_labels, target_labels, num_classes)
    row = {f"dice_{k}": block_mean(dice[:, k], block) for k in range(num_classes)}
    row["dice_mean"] = block_mean(dice[:, 1:].mean(axis=1), block)
    assd = assd_per_bscan(warped_labels, target_labels, num_classes, spacing_hw_mm)
    row["assd_um"] = 1000.0 * block_mean(finite_mean(assd, axis=1), block)
    if (warped_intensity is None) != (target_intensity is None):
        raise ValueError("give both warped_intensity and target_intensity for SSIM, or neither")
    if warped_intensity is not None and target_intensity is not None:
        row["ssim"] = block_mean(ssim_per_bscan(warped_intensity, target_intensity), block)
    return row
