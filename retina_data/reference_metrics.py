"""The paper's metric set, computed as the reference evaluation scripts compute it.

Every metric is computed per B-scan (a 2-D ``[H, W]`` slice of an ``[H, W, D]`` volume);
callers average over B-scans, then over eyes. The definitions (see ``REFERENCE.md``,
"Evaluation (the paper's tables)"):

- labels are first remapped to 8 classes (:func:`remap_reference_classes`);
- MSE and MAE per B-scan; PSNR and scikit-image SSIM (its defaults: 7 x 7 uniform window,
  K1 = 0.01, K2 = 0.03) with the data range of *that ground-truth B-scan* (max - min);
- smooth Dice ``(2 sum(p g) + eps) / (sum(p) + sum(g) + eps)``, ``eps = 1e-12``, per label
  ``1..max(ground truth of the B-scan)``, mean over those labels (a label absent from both
  counts 1);
- ASSD / HD95 / HD per label between the *upper borders* of the label (the first row of the
  label in each A-scan; a border on row 0 is dropped): the distances from each border pixel
  of one border to the other border (as a Euclidean distance transform gives them), pooled
  over both directions; mean, 95th percentile and maximum; mean over labels ignoring labels
  whose border is missing from one side. The reference passes the sampling ``(A-scan spacing,
  depth spacing)`` to the ``(depth, A-scan)`` axes of the B-scan, i.e. swapped
  (``sampling="swapped"``); ``sampling="correct"`` passes ``(depth spacing, A-scan spacing)``;
- fluid eyes, in the CSCR labelling (0 background, 1 retina, > 1 fluid; see
  :func:`cscr_labels`): Dice of the retina (label > 0), Dice of the fluid (label > 1; NaN
  for a B-scan without fluid in the truth), and the border distances of the retina's upper
  border (the ILM).

Distances are returned in the unit of the spacing (mm for our eyes); the tables show them
in µm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from skimage.metrics import structural_similarity

from retina_data.labels import FLUID_LABEL, RETINA_LABELS

BorderSampling = Literal["swapped", "correct"]
SMOOTH_DICE_EPS = 1e-12
REFERENCE_CLASS_MAP: dict[int, int] = {1: 1, 2: 2, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 6, 9: 7, 10: 7, 11: 8}
"""Our 13 layer classes to the paper's 8 scored classes; every other label (0, the choroid 12,
fluid 13) becomes 0."""
NUM_REFERENCE_CLASSES = 9
"""Background and the 8 scored classes."""

_LOOKUP = np.zeros(256, dtype=np.uint8)
for _source, _target in REFERENCE_CLASS_MAP.items():
    _LOOKUP[_source] = _target


def remap_reference_classes(labels: np.ndarray) -> np.ndarray:
    """Labels (any shape, integers 0..255) mapped by :data:`REFERENCE_CLASS_MAP`, uint8."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels span {labels.min()}..{labels.max()}; expected 0..255")
    return _LOOKUP[labels.astype(np.intp)]


def cscr_labels(labels: np.ndarray) -> np.ndarray:
    """Our labels in the reference's CSCR labelling: 1 retina (layers 1..11), 2 fluid (13), 0 else."""
    labels = np.asarray(labels)
    out = np.isin(labels, RETINA_LABELS).astype(np.uint8)
    out[labels == FLUID_LABEL] = 2
    return out


def _check_volumes(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"expected two [H, W, D] volumes of one shape, got {pred.shape} and {truth.shape}")
    return pred, truth


def bscan_data_range(truth: np.ndarray) -> np.ndarray:
    """Data range ``max - min`` of each ground-truth B-scan ``[D]`` of ``truth [H, W, D]``."""
    truth = np.asarray(truth, dtype=np.float64)
    return truth.max(axis=(0, 1)) - truth.min(axis=(0, 1))


def intensity_metrics_per_bscan(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """MSE, MAE, PSNR (dB) and SSIM of each B-scan ``[D]`` of ``[H, W, D]`` volumes.

    PSNR and SSIM use the data range of the ground-truth B-scan; PSNR is ``inf`` for an
    exact B-scan; both are NaN for a constant ground-truth B-scan (no data range).
    """
    pred, truth = _check_volumes(pred, truth)
    pred, truth = pred.astype(np.float64), truth.astype(np.float64)
    error = pred - truth
    mse = np.mean(np.square(error), axis=(0, 1))
    mae = np.mean(np.abs(error), axis=(0, 1))
    ranges = bscan_data_range(truth)
    psnr = np.full(mse.shape, np.nan)
    ssim = np.full(mse.shape, np.nan)
    for d, (span, squared) in enumerate(zip(ranges, mse)):
        if span <= 0:
            continue
        psnr[d] = np.inf if squared == 0 else 10.0 * np.log10(span**2 / squared)
        ssim[d] = structural_similarity(truth[:, :, d], pred[:, :, d], data_range=span)
    return {"mse": mse, "mae": mae, "psnr": psnr, "ssim": ssim}


def smooth_dice(pred_mask: np.ndarray, truth_mask: np.ndarray, eps: float = SMOOTH_DICE_EPS) -> float:
    """``(2 sum(p g) + eps) / (sum(p) + sum(g) + eps)`` of two masks (any shape); 1 when both are empty."""
    p = np.asarray(pred_mask, dtype=np.float64)
    g = np.asarray(truth_mask, dtype=np.float64)
    return float((2.0 * np.sum(p * g) + eps) / (np.sum(p) + np.sum(g) + eps))


def _scored_labels(truth_bscan: np.ndarray) -> range:
    return range(1, int(truth_bscan.max(initial=0)) + 1)


def dice_per_bscan(pred_labels: np.ndarray, truth_labels: np.ndarray) -> np.ndarray:
    """Smooth Dice of each B-scan ``[D]``: mean over labels ``1..max(truth B-scan)``; NaN without labels."""
    pred, truth = _check_volumes(pred_labels, truth_labels)
    dice = np.full(pred.shape[2], np.nan)
    for d in range(pred.shape[2]):
        labels = _scored_labels(truth[:, :, d])
        if len(labels):
            dice[d] = np.mean([smooth_dice(pred[:, :, d] == label, truth[:, :, d] == label) for label in labels])
    return dice


def upper_border(mask: np.ndarray) -> np.ndarray:
    """The upper border of ``mask [H, W]``: per A-scan (column) its first true row; a border on row 0 is dropped.

    Returns:
        ``[H, W]`` bool, at most one true pixel per column.
    """
    mask = np.asarray(mask, dtype=bool)
    first = mask.argmax(axis=0)  # [W]
    columns = np.flatnonzero(mask.any(axis=0) & (first > 0))
    border = np.zeros(mask.shape, dtype=bool)
    border[first[columns], columns] = True
    return border


def border_sampling(spacing_hw: Sequence[float], sampling: BorderSampling) -> tuple[float, float]:
    """Sampling of the ``(depth, A-scan)`` axes for the border distances.

    Args:
        spacing_hw: ``(depth spacing, A-scan spacing)``.
        sampling: ``"swapped"`` (the reference: ``(A-scan spacing, depth spacing)``) or ``"correct"``.
    """
    depth, ascan = (float(s) for s in spacing_hw)
    if sampling == "swapped":
        return ascan, depth
    if sampling == "correct":
        return depth, ascan
    raise ValueError(f"sampling must be 'swapped' or 'correct', got {sampling!r}")


def border_distances(
    pred_border: np.ndarray, truth_border: np.ndarray, sampling: tuple[float, float]
) -> np.ndarray | None:
    """Symmetric distances between two borders ``[H, W]``: from every pixel of each to the other, pooled.

    The distance from a pixel to the other border is what the reference reads from the
    Euclidean distance transform of that border's complement; it is computed here directly
    between the border pixels (at most one per A-scan), which gives the same values.

    Returns:
        ``[P + G]`` distances (unit of ``sampling``), or ``None`` when either border is empty.
    """
    if not (pred_border.any() and truth_border.any()):
        return None
    scale = np.asarray(sampling, dtype=np.float64)
    pred = np.argwhere(pred_border) * scale  # [P, 2]
    truth = np.argwhere(truth_border) * scale  # [G, 2]
    pairwise = np.sqrt(((pred[:, None, :] - truth[None, :, :]) ** 2).sum(axis=-1))  # [P, G]
    return np.concatenate([pairwise.min(axis=1), pairwise.min(axis=0)])


def _summarise_distances(distances: np.ndarray) -> tuple[float, float, float]:
    return float(distances.mean()), float(np.percentile(distances, 95)), float(distances.max())


def _mean_or_nan(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def border_metrics_per_bscan(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    spacing_hw: Sequence[float],
    sampling: BorderSampling = "swapped",
    labels: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """ASSD, HD95 and HD of the labels' upper borders in each B-scan ``[D]``.

    Args:
        pred_labels: predicted labels ``[H, W, D]``.
        truth_labels: true labels ``[H, W, D]``.
        spacing_hw: ``(depth spacing, A-scan spacing)``.
        sampling: see :func:`border_sampling`.
        labels: labels to score; ``None``: ``1..max(truth B-scan)`` per B-scan.

    Returns:
        ``{"assd": [D], "hd95": [D], "hd": [D]}``: means over the labels whose border exists in
        both prediction and truth; NaN for a B-scan without any.
    """
    pred, truth = _check_volumes(pred_labels, truth_labels)
    axes = border_sampling(spacing_hw, sampling)
    result = {name: np.full(pred.shape[2], np.nan) for name in ("assd", "hd95", "hd")}
    for d in range(pred.shape[2]):
        chosen = _scored_labels(truth[:, :, d]) if labels is None else labels
        per_label = [
            border_distances(upper_border(pred[:, :, d] == label), upper_border(truth[:, :, d] == label), axes)
            for label in chosen
        ]
        summaries = [_summarise_distances(found) for found in per_label if found is not None]
        for k, name in enumerate(("assd", "hd95", "hd")):
            result[name][d] = _mean_or_nan([summary[k] for summary in summaries])
    return result


def fluid_metrics_per_bscan(
    pred_cscr: np.ndarray, truth_cscr: np.ndarray, spacing_hw: Sequence[float], sampling: BorderSampling = "swapped"
) -> dict[str, np.ndarray]:
    """The CSCR metrics of each B-scan ``[D]`` of labels in the CSCR labelling ``[H, W, D]``.

    Returns:
        ``retina_dice`` (label > 0), ``fluid_dice`` (label > 1; NaN where the true B-scan has no
        fluid) and ``ilm_assd``, ``ilm_hd95``, ``ilm_hd`` of the upper border of label > 0.
    """
    pred, truth = _check_volumes(pred_cscr, truth_cscr)
    depth = pred.shape[2]
    retina = np.array([smooth_dice(pred[:, :, d] > 0, truth[:, :, d] > 0) for d in range(depth)])
    fluid = np.array(
        [
            smooth_dice(pred[:, :, d] > 1, truth[:, :, d] > 1) if np.any(truth[:, :, d] > 1) else np.nan
            for d in range(depth)
        ]
    )
    ilm = border_metrics_per_bscan(
        (pred > 0).astype(np.uint8), (truth > 0).astype(np.uint8), spacing_hw, sampling, labels=[1]
    )
    return {
        "retina_dice": retina,
        "fluid_dice": fluid,
        "ilm_assd": ilm["assd"],
        "ilm_hd95": ilm["hd95"],
        "ilm_hd": ilm["hd"],
    }
