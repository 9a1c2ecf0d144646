"""Scoring of interpolated volumes on the gap and input B-scans (the evaluation protocol).

Every method predicts the dense volume of an unseen eye from its sparse B-scans. The
prediction is scored against the dense ground truth separately on

- ``gap``: the B-scans that were never given to the method,
- ``input``: the acquired B-scans (a method that reproduces its input scores perfectly),
- ``all``: every B-scan,

with PSNR, SSIM, MAE, MSE, optional LPIPS, Dice per class and mean, and the A-scan-wise
layer-boundary errors (``assd_mean`` / ``hd95_mean``, mm; see
:mod:`retina_data.surface_distance`). Eyes whose truth holds fluid (label 13) also get the
retina Dice, the fluid Dice and the ILM error. :func:`evaluate_run` scores a whole test set
and writes per-eye CSV/JSON, the summary table, NIfTI volumes and figures.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from retina_data import metrics
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.files import refuse_existing
from retina_data.labels import FLUID_LABEL, NUM_LAYER_CLASSES, label_names

from anisotropic_interpolation import plots, reporting
from anisotropic_interpolation.reporting import Summary

SUBSETS: tuple[str, ...] = ("gap", "input", "all")
PATHOLOGY_COLUMNS: tuple[str, ...] = ("retina_dice", "fluid_dice", "ilm_assd")
_METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


@dataclass
class MethodPrediction:
    """One method's dense prediction of one eye.

    Attributes:
        intensity: predicted OCT ``[H, W, D]``, float32.
        labels: predicted labels ``[H, W, D]``, uint8, or ``None`` for intensity-only methods.
        probabilities: class probabilities ``[H, W, D, C]``, float32, when the method gives them.
    """

    intensity: np.ndarray
    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.intensity = np.asarray(self.intensity, dtype=np.float32)
        if self.intensity.ndim != 3:
            raise DataError(f"predicted intensity must be [H, W, D], got shape {self.intensity.shape}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels).astype(np.uint8, copy=False)
            if self.labels.shape != self.intensity.shape:
                raise DataError(f"predicted labels {self.labels.shape} and intensity "
                                f"{self.intensity.shape} differ in shape")
        if self.probabilities is not None:
            self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
            if self.probabilities.shape[:3] != self.intensity.shape or self.probabilities.ndim != 4:
                raise DataError(f"predicted probabilities must be [H, W, D, C] with [H, W, D] = "
                                f"{self.intensity.shape}, got {self.probabilities.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, D)``."""
        return tuple(self.intensity.shape)  # type: ignore[return-value]

    def select_bscans(self, index: np.ndarray) -> MethodPrediction:
        """The prediction restricted to the B-scans ``index [K]``."""
        return MethodPrediction(
            intensity=self.intensity[:, :, index],
            labels=None if self.labels is None else self.labels[:, :, index],
            probabilities=None if self.probabilities is None else self.probabilities[:, :, index],
        )


def input_mask_from_positions(dense_positions: np.ndarray, input_positions: np.ndarray,
                              tolerance_mm: float = 1e-6) -> np.ndarray:
    """Which dense B-scans ``[D]`` were acquired, from the sparse eye's positions ``[N]`` (mm).

    Raises:
        DataError: an input position matches no dense B-scan.
    """
    dense = np.asarray(dense_positions, dtype=np.float64)
    sparse = np.asarray(input_positions, dtype=np.float64)
    distance = np.abs(dense[:, None] - sparse[None, :])  # [D, N]
    unmatched = distance.min(axis=0) > tolerance_mm
    if np.any(unmatched):
        raise DataError(f"input B-scan positions {sparse[unmatched].tolist()} mm match no B-scan "
                        "of the ground-truth eye")
    return distance.min(axis=1) <= tolerance_mm


def subset_index(input_mask: np.ndarray, subset: str) -> np.ndarray:
    """B-scan indices ``[K]`` of ``subset`` (``gap``, ``input`` or ``all``)."""
    if subset == "gap":
        return np.flatnonzero(~input_mask)
    if subset == "input":
        return np.flatnonzero(input_mask)
    if subset == "all":
        return np.arange(input_mask.size)
    raise ValueError(f"unknown subset {subset!r}; expected one of {SUBSETS}")


def class_names(num_classes: int) -> list[str]:
    """Names of labels ``0 .. num_classes - 1`` (layers, then the fluid class)."""
    names = label_names(with_fluid=True)
    if num_classes > len(names):
        raise DataError(f"num_classes {num_classes} exceeds the {len(names)} known classes {names}")
    return names[:num_classes]


@functools.cache
def _lpips_unavailable_notice() -> None:
    """Print, once per process, that the LPIPS column stays empty."""
    print("notice: LPIPS skipped (the lpips package or its weights are not available offline); "
          "the lpips column stays empty")


def _check_mask(truth: Eye, input_mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(input_mask)
    if mask.dtype != bool or mask.shape != (truth.shape[2],):
        raise DataError(f"eye {truth.eye_id}: input mask must be bool [D={truth.shape[2]}], "
                        f"got {mask.dtype} {mask.shape}")
    return mask


def _intensity_scores(pred: np.ndarray, truth: np.ndarray, lpips: bool) -> dict[str, float | None]:
    return {
        "psnr": metrics.psnr(pred, truth),
        "ssim": metrics.ssim(pred, truth),
        "mae": metrics.mae(pred, truth),
        "mse": metrics.mse(pred, truth),
        "lpips": metrics.lpips_distance(pred, truth) if lpips else None,
    }


def _label_scores(pred: np.ndarray | None, truth: np.ndarray | None, names: list[str],
                  spacing: tuple[float, float, float], pathology: bool) -> dict[str, float | None]:
    columns = ["dice_mean", *(f"dice_{name}" for name in names), "assd_mean", "hd95_mean"]
    if pathology:
        columns += PATHOLOGY_COLUMNS
    if pred is None or truth is None:
        return dict.fromkeys(columns)
    dice = metrics.dice_per_class(pred, truth, len(names))
    boundaries = metrics.boundary_surface_errors(pred, truth, spacing)
    scores: dict[str, float | None] = {"dice_mean": metrics.foreground_mean(dice)}
    scores.update({f"dice_{name}": float(value) for name, value in zip(names, dice)})
    scores["assd_mean"] = metrics.mean_ignoring_nan(boundaries["assd"])
    scores["hd95_mean"] = metrics.mean_ignoring_nan(boundaries["hd95"])
    if pathology:
        scores["retina_dice"] = metrics.retina_dice(pred, truth)
        scores["fluid_dice"] = metrics.fluid_dice(pred, truth)
        scores["ilm_assd"] = float(boundaries["assd"][0])
    return scores


def score_eye(truth: Eye, input_mask: np.ndarray, predictions: dict[str, MethodPrediction], *,
              num_classes: int | None = None, lpips: bool = False) -> list[dict[str, Any]]:
    """Score every method on the gap, input and all B-scans of one eye.

    Args:
        truth: the dense ground-truth eye (``oct [H, W, D]``, optional ``labels``).
        input_mask: ``[D]`` bool, true for the B-scans the methods were given.
        predictions: method name -> dense prediction ``[H, W, D]`` at the truth's positions.
        num_classes: label classes to score; 13 layers, or 14 when the truth holds fluid,
            if ``None``.
        lpips: also compute LPIPS (left empty, with a one-line notice, when unavailable).

    Returns:
        One row per (subset, method), gap rows first: ``eye_id, method, subset, n_bscans,
        psnr, ssim, mae, mse, lpips, dice_mean, dice_<class>..., assd_mean, hd95_mean``
        and, for eyes with fluid, ``retina_dice, fluid_dice, ilm_assd``. Label columns are
        ``None`` when the truth or the method has no labels; NaN where a score is undefined
        (e.g. Dice of a class absent from both). A subset without B-scans gets no rows.
    """
    mask = _check_mask(truth, input_mask)
    pathology = truth.labels is not None and bool(np.any(truth.labels == FLUID_LABEL))
    if num_classes is None:
        num_classes = NUM_LAYER_CLASSES + int(pathology)
    names = class_names(num_classes)
    for method, prediction in predictions.items():
        if not _METHOD_NAME.fullmatch(method):
            raise DataError(f"method name {method!r} must be letters, digits, '_', '.', '+' or '-'")
        if prediction.shape != truth.shape:
            raise DataError(f"eye {truth.eye_id}: method {method!r} predicted shape {prediction.shape}, "
                            f"the ground truth is {truth.shape}")
    if lpips and not metrics.lpips_available():
        _lpips_unavailable_notice()
        lpips = False
    rows: list[dict[str, Any]] = []
    for subset in SUBSETS:
        index = subset_index(mask, subset)
        if index.size == 0:
            continue
        true_oct = truth.oct[:, :, index]
        true_labels = None if truth.labels is None else truth.labels[:, :, index]
        for method, prediction in predictions.items():
            part = prediction.select_bscans(index)
            row: dict[str, Any] = {"eye_id": truth.eye_id, "method": method, "subset": subset,
                                   "n_bscans": int(index.size)}
            row.update(_intensity_scores(part.intensity, true_oct, lpips))
            row.update(_label_scores(part.labels, true_labels, names, truth.spacing, pathology))
            rows.append(row)
    return rows


def evaluate_run(truth_eyes: list[Eye], input_masks: dict[str, np.ndarray],
                 predictions: dict[str, dict[str, MethodPrediction]], out_dir: str | Path, *,
                 save_nifti: bool = True, figures: bool = True, lpips: bool = False,
                 overwrite: bool = False, num_classes: int | None = None) -> Summary:
    """Score every test eye and write the results under ``out_dir``.

    Writes ``metrics/<eye_id>.csv`` + ``.json`` (one row per method and subset),
    ``metrics_all.csv``, ``summary.csv`` + ``summary.md`` (mean ± std over eyes per method
    and subset, gap rows first), ``nifti/<eye_id>_<method>_intensity.nii.gz`` (+
    ``_labels.nii.gz``) at the truth's spacing and B-scan positions, and
    ``figures/<eye_id>.png``. All files are written atomically; existing files are refused
    before anything is written unless ``overwrite``.

    Args:
        truth_eyes: dense ground-truth eyes.
        input_masks: eye_id -> ``[D]`` bool, the B-scans each method was given.
        predictions: eye_id -> method -> dense prediction ``[H, W, D]``.
        out_dir: results folder.
        save_nifti: write the predicted volumes.
        figures: draw one figure per eye.
        lpips: also compute LPIPS where available offline.
        overwrite: replace existing result files.
        num_classes: label classes to score (see :func:`score_eye`).

    Returns:
        The :class:`Summary` of all rows.
    """
    out_dir = Path(out_dir)
    for eye in truth_eyes:
        for name, table in (("input mask", input_masks), ("predictions", predictions)):
            if eye.eye_id not in table:
                raise DataError(f"eye {eye.eye_id}: no {name} given to the evaluation")
    planned = reporting.planned_outputs(out_dir, truth_eyes, predictions, save_nifti=save_nifti, figures=figures)
    for path in planned:
        refuse_existing(path, overwrite)
    all_rows: list[dict[str, Any]] = []
    for eye in tqdm(truth_eyes, desc="evaluating", unit="eye"):
        eye_predictions = predictions[eye.eye_id]
        rows = score_eye(eye, input_masks[eye.eye_id], eye_predictions, num_classes=num_classes, lpips=lpips)
        reporting.write_eye_metrics(out_dir, eye, input_masks[eye.eye_id], rows, overwrite=overwrite)
        if save_nifti:
            for method, prediction in eye_predictions.items():
                reporting.write_prediction_nifti(out_dir, eye, method, prediction, overwrite=overwrite)
        if figures:
            plots.eye_figure(eye, input_masks[eye.eye_id], eye_predictions,
                             reporting.figure_path(out_dir, eye.eye_id), overwrite=overwrite)
        all_rows.extend(rows)
    summary = reporting.Summary.from_rows(all_rows)
    reporting.write_summary(out_dir, summary, overwrite=overwrite)
    return summary
