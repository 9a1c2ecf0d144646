"""Surface distances in millimetres: per-class surfaces (MONAI) and OCT layer boundaries.

Two families, both symmetric and in mm:

- :func:`surface_distances`: ASSD and HD95 between the 3-D surfaces of each class region,
  computed by MONAI (``compute_average_surface_distance`` / ``compute_hausdorff_distance``)
  with the voxel spacing. A retinal layer spans the whole scan, so its region surface
  also holds the side walls at the image border, which agree trivially between
  prediction and truth; this is the measure for compact structures (atlas organs, fluid).
- :func:`boundary_surface_errors`: the error of each of the 12 **layer boundaries**
  measured along every A-scan, as is usual for OCT layer segmentation. Boundary ``i``
  (between class ``i`` and class ``i + 1``) lies at the first row whose label exceeds
  ``i``; the per-A-scan error is ``|depth_pred - depth_truth| * dH``. The interpolation
  tables report these (columns ``assd_mean`` / ``hd95_mean``: mean absolute boundary
  error and its 95th percentile, averaged over the boundaries).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from retina_data.labels import BOUNDARY_NAMES, FLUID_LABEL

NUM_BOUNDARIES = len(BOUNDARY_NAMES)


def _check_labels(pred_labels: np.ndarray, truth_labels: np.ndarray) -> None:
    if pred_labels.shape != truth_labels.shape:
        raise ValueError(f"label volumes differ in shape: {pred_labels.shape} vs {truth_labels.shape}")


def surface_distances(
    pred_labels: np.ndarray, truth_labels: np.ndarray, spacing_mm: Sequence[float], classes: Sequence[int]
) -> dict[str, np.ndarray]:
    """Symmetric ASSD and HD95 (mm) between the surfaces of each class region.

    Args:
        pred_labels: predicted labels ``[H, W, D]`` (or any N-D shape), integer.
        truth_labels: true labels, same shape.
        spacing_mm: voxel size in mm, one value per axis (``(dH, dW, dD)``).
        classes: label values to score, e.g. ``range(1, 13)``.

    Returns:
        ``{"assd": [K], "hd95": [K]}`` for the ``K`` classes in order, float64 mm. ASSD is
        the mean of the distances from each surface voxel of one region to the other
        surface, pooled over both directions; HD95 is the larger of the two directed 95th
        percentiles (MONAI's convention). NaN where a class is absent from the prediction
        or the truth (or both).
    """
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance  # 3 s import

    _check_labels(pred_labels, truth_labels)
    spacing = [float(s) for s in spacing_mm]
    if len(spacing) != pred_labels.ndim:
        raise ValueError(f"{len(spacing)} spacing values for {pred_labels.ndim}-D labels")
    assd = np.full(len(classes), np.nan)
    hd95 = np.full(len(classes), np.nan)
    for k, label in enumerate(classes):
        pred_mask = torch.from_numpy(np.asarray(pred_labels == label)[None, None])
        truth_mask = torch.from_numpy(np.asarray(truth_labels == label)[None, None])
        if not (pred_mask.any() and truth_mask.any()):
            continue
        with warnings.catch_warnings():  # MONAI passes its own deprecated argument internally
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
            assd[k] = float(
                compute_average_surface_distance(
                    pred_mask, truth_mask, include_background=True, symmetric=True, spacing=spacing
                )[0, 0]
            )
            hd95[k] = float(
                compute_hausdorff_distance(
                    pred_mask, truth_mask, include_background=True, percentile=95, spacing=spacing
                )[0, 0]
            )
    return {"assd": assd, "hd95": hd95}


_COUNT_CHUNK = 1 << 23
"""Voxels counted per ``bincount`` call in :func:`boundary_depths` (a 64 MiB index buffer)."""


def boundary_depths(labels: np.ndarray, boundaries: Sequence[int] | None = None) -> np.ndarray:
    """Row index of each layer boundary in every A-scan.

    Boundary ``i`` lies at the first row (from the top) whose label exceeds ``i``. Fluid
    (label 13) is not a layer and is skipped, so a fluid pocket does not move the
    boundaries below it.

    The running maximum of the labels down each A-scan never decreases, so the first row
    where it exceeds ``i`` is the number of rows where it is at most ``i``: one histogram
    per A-scan gives every boundary at once.

    Args:
        labels: layer labels ``[H, W, D]``.
        boundaries: boundary indices (``0`` = ILM .. ``11`` = Bruch's membrane); all 12
            when ``None``.

    Returns:
        ``[B, W, D]`` int64 rows; ``H`` where the A-scan has no label above ``i``
        (the boundary lies below the image).
    """
    chosen = np.arange(NUM_BOUNDARIES) if boundaries is None else np.asarray(boundaries, dtype=np.int64)
    layers = np.where(labels == FLUID_LABEL, 0, labels) if np.any(labels == FLUID_LABEL) else labels
    height = labels.shape[0]
    deepest_so_far = np.maximum.accumulate(layers, axis=0).reshape(height, -1)  # [H, A]
    ascans = deepest_so_far.shape[1]
    levels = int(deepest_so_far.max(initial=0)) + 1
    offsets = np.arange(ascans, dtype=np.int64) * levels
    counts = np.zeros(ascans * levels, dtype=np.int64)
    rows = max(1, _COUNT_CHUNK // max(ascans, 1))
    for start in range(0, height, rows):
        counts += np.bincount((deepest_so_far[start : start + rows] + offsets).reshape(-1), minlength=ascans * levels)
    rows_at_most = np.cumsum(counts.reshape(ascans, levels), axis=1)  # [A, levels]: rows with maximum <= level
    depths = rows_at_most[:, np.minimum(chosen, levels - 1)].T  # [B, A]
    return depths.reshape(len(chosen), *labels.shape[1:])


def boundary_errors_per_ascan(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    spacing_mm: Sequence[float],
    boundaries: Sequence[int] | None = None,
) -> np.ndarray:
    """A-scan-wise error (mm) of each layer boundary: ``[B, W, D]``.

    The error is ``|depth_pred - depth_truth| * dH``; NaN in A-scans where the true
    boundary does not exist. A boundary missing from the predicted A-scan is placed just
    below the image (row ``H``), so it is penalised rather than skipped.

    Args:
        pred_labels: predicted labels ``[H, W, D]``.
        truth_labels: true labels ``[H, W, D]``.
        spacing_mm: ``(dH, dW, dD)`` in mm; only ``dH`` enters the distance.
        boundaries: boundary indices to score; all 12 when ``None``.
    """
    _check_labels(pred_labels, truth_labels)
    if pred_labels.ndim != 3:
        raise ValueError(f"labels must be [H, W, D], got shape {pred_labels.shape}")
    truth_depths = boundary_depths(truth_labels, boundaries)
    pred_depths = boundary_depths(pred_labels, boundaries)
    present = truth_depths < truth_labels.shape[0]
    return np.where(present, np.abs(pred_depths - truth_depths) * float(spacing_mm[0]), np.nan)


def summarise_boundary_errors(errors: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and 95th percentile over A-scans of A-scan-wise boundary errors ``[B, ...]``.

    Returns:
        ``{"assd": [B], "hd95": [B]}`` float64 mm, ignoring NaN A-scans; NaN for a
        boundary without any scored A-scan.
    """
    flat = errors.reshape(errors.shape[0], -1)
    scored = ~np.isnan(flat).all(axis=1)
    assd = np.full(flat.shape[0], np.nan)
    hd95 = np.full(flat.shape[0], np.nan)
    assd[scored] = np.nanmean(flat[scored], axis=1)
    hd95[scored] = np.nanpercentile(flat[scored], 95, axis=1)
    return {"assd": assd, "hd95": hd95}


def boundary_surface_errors(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    spacing_mm: Sequence[float],
    boundaries: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Per-boundary A-scan-wise error (mm) between predicted and true layer boundaries.

    See :func:`boundary_errors_per_ascan` for the per-A-scan error.

    Args:
        pred_labels: predicted labels ``[H, W, D]``.
        truth_labels: true labels ``[H, W, D]``.
        spacing_mm: ``(dH, dW, dD)`` in mm; only ``dH`` enters the distance.
        boundaries: boundary indices to score; all 12 when ``None``.

    Returns:
        ``{"assd": [B], "hd95": [B]}`` float64 mm: the mean absolute error and its 95th
        percentile over A-scans, per boundary; NaN where the truth lacks the boundary in
        every A-scan.
    """
    return summarise_boundary_errors(boundary_errors_per_ascan(pred_labels, truth_labels, spacing_mm, boundaries))


def ilm_assd(pred_labels: np.ndarray, truth_labels: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Mean A-scan-wise ILM (boundary 0) error in mm; NaN when the truth has no ILM."""
    return float(boundary_surface_errors(pred_labels, truth_labels, spacing_mm, boundaries=[0])["assd"][0])
