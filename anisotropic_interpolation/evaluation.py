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

Beside these, :func:`score_eye_reference` computes the paper's metric set as the reference
evaluation does (:mod:`retina_data.reference_metrics`): labels remapped to 8 classes, every
metric per B-scan and averaged over the subset's B-scans (then over eyes in the summary),
in the paper's units; it is written as ``summary_reference.md|csv``. For fold containers
the paper's protocol is the 31-B-scan truth with inputs 0, 2, ..., 30 and gaps 1, 3, ...,
29; for a retina_data tree it generalises to the dense eye with inputs every k-th B-scan
and gaps the B-scans between (the ``gap`` rows either way).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from anisotropic_interpolation import plots, reporting
from anisotropic_interpolation.reporting import (
    HEADINGS,
    REFERENCE_METRICS,
    REFERENCE_PROTOCOL,
    THICKNESS_KEYS,
    THICKNESS_METRICS,
    THICKNESS_PROTOCOL,
    summarise,
)
from retina_data import metrics, reference_metrics
from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import Eye
from retina_data.labels import FLUID_LABEL, NUM_LAYER_CLASSES, label_names
from retina_data.result_tables import Summary, write_result_tables
from retina_data.thickness import etdrs_errors

SUBSETS: tuple[str, ...] = ("gap", "input", "all")
PATHOLOGY_COLUMNS: tuple[str, ...] = ("retina_dice", "fluid_dice", "ilm_assd")
REFERENCE_LABEL_COLUMNS: tuple[str, ...] = ("dice_pct", "assd_um", "hd95_um", "hd_um")
REFERENCE_FLUID_COLUMNS: tuple[str, ...] = (
    "retina_dice_pct",
    "fluid_dice_pct",
    "ilm_assd_um",
    "ilm_hd95_um",
    "ilm_hd_um",
)
UM_PER_MM = 1000.0
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
                raise DataError(
                    f"predicted labels {self.labels.shape} and intensity {self.intensity.shape} differ in shape"
                )
        if self.probabilities is not None:
            self.probabilities = np.asarray(self.probabilities, dtype=np.float32)
            if self.probabilities.shape[:3] != self.intensity.shape or self.probabilities.ndim != 4:
                raise DataError(
                    f"predicted probabilities must be [H, W, D, C] with [H, W, D] = "
                    f"{self.intensity.shape}, got {self.probabilities.shape}"
                )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, D)``."""
        return tuple(self.intensity.shape)


def input_mask_from_positions(
    dense_positions: np.ndarray, input_positions: np.ndarray, tolerance_mm: float = 1e-6
) -> np.ndarray:
    """Which dense B-scans ``[D]`` were acquired, from the sparse eye's positions ``[N]`` (mm).

    Raises:
        DataError: an input position matches no dense B-scan.
    """
    dense = np.asarray(dense_positions, dtype=np.float64)
    sparse = np.asarray(input_positions, dtype=np.float64)
    distance = np.abs(dense[:, None] - sparse[None, :])  # [D, N]
    unmatched = distance.min(axis=0) > tolerance_mm
    if np.any(unmatched):
        raise DataError(
            f"input B-scan positions {sparse[unmatched].tolist()} mm match no B-scan of the ground-truth eye"
        )
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
    print(
        "notice: LPIPS skipped (the lpips package or its weights are not available offline); "
        "the lpips column stays empty"
    )


def _check_mask(truth: Eye, input_mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(input_mask)
    if mask.dtype != bool or mask.shape != (truth.shape[2],):
        raise DataError(
            f"eye {truth.eye_id}: input mask must be bool [D={truth.shape[2]}], got {mask.dtype} {mask.shape}"
        )
    return mask


@dataclass
class BscanStatistics:
    """Per-B-scan statistics of one prediction, from which the scores of any B-scan subset follow.

    Attributes:
        mse: mean squared error of each B-scan ``[D]``.
        mae: mean absolute error of each B-scan ``[D]``.
        ssim: 2-D SSIM of each B-scan ``[D]``.
        lpips: LPIPS of each B-scan ``[D]``, or ``None`` when not computed.
        confusion: label confusion matrix of each B-scan ``[D, C, C]``, or ``None`` without labels.
        boundary_errors: A-scan-wise layer-boundary errors ``[12, W, D]`` in mm (NaN where
            the true boundary is absent), or ``None`` without labels.
    """

    mse: np.ndarray
    mae: np.ndarray
    ssim: np.ndarray
    lpips: np.ndarray | None
    confusion: np.ndarray | None
    boundary_errors: np.ndarray | None

    @classmethod
    def compute(cls, prediction: MethodPrediction, truth: Eye, num_classes: int, lpips: bool) -> BscanStatistics:
        """Statistics of ``prediction`` against the dense ``truth`` over all its B-scans."""
        confusion = boundary_errors = None
        if prediction.labels is not None and truth.labels is not None:
            confusion = metrics.confusion_per_bscan(prediction.labels, truth.labels, num_classes)
            boundary_errors = metrics.boundary_errors_per_ascan(prediction.labels, truth.labels, truth.spacing)
        return cls(
            mse=metrics.mse_per_bscan(prediction.intensity, truth.oct),
            mae=metrics.mae_per_bscan(prediction.intensity, truth.oct),
            ssim=metrics.ssim_per_bscan(prediction.intensity, truth.oct),
            lpips=metrics.lpips_per_bscan(prediction.intensity, truth.oct) if lpips else None,
            confusion=confusion,
            boundary_errors=boundary_errors,
        )

    def scores(self, index: np.ndarray, names: list[str], pathology: bool) -> dict[str, float | None]:
        """Scores of the B-scans ``index [K]`` pooled: equal to scoring that sub-volume directly."""
        mse = float(self.mse[index].mean())
        scores: dict[str, float | None] = {
            "psnr": metrics.psnr_from_mse(mse),
            "ssim": float(self.ssim[index].mean()),
            "mae": float(self.mae[index].mean()),
            "mse": mse,
            "lpips": None if self.lpips is None else float(self.lpips[index].mean()),
        }
        label_columns = ["dice_mean", *(f"dice_{name}" for name in names), "assd_mean", "hd95_mean"]
        label_columns += PATHOLOGY_COLUMNS if pathology else ()
        if self.confusion is None or self.boundary_errors is None:
            return scores | dict.fromkeys(label_columns)
        counts = self.confusion[index].sum(axis=0)
        dice = metrics.dice_from_confusion(counts)
        boundaries = metrics.summarise_boundary_errors(self.boundary_errors[:, :, index])
        scores["dice_mean"] = metrics.foreground_mean(dice)
        scores.update({f"dice_{name}": float(value) for name, value in zip(names, dice)})
        scores["assd_mean"] = metrics.mean_ignoring_nan(boundaries["assd"])
        scores["hd95_mean"] = metrics.mean_ignoring_nan(boundaries["hd95"])
        if pathology:
            scores["retina_dice"] = metrics.group_dice(counts, metrics.RETINA_WITH_FLUID)
            scores["fluid_dice"] = metrics.group_dice(counts, [FLUID_LABEL])
            scores["ilm_assd"] = float(boundaries["assd"][0])
        return scores


def score_eye(
    truth: Eye,
    input_mask: np.ndarray,
    predictions: dict[str, MethodPrediction],
    *,
    num_classes: int | None = None,
    lpips: bool = False,
) -> list[dict[str, Any]]:
    """Score every method on the gap, input and all B-scans of one eye.

    Args:
        truth: the dense ground-truth eye (``oct [H, W, D]``, optional ``labels``).
        input_mask: ``[D]`` bool, true for the B-scans the methods were given.
        predictions: method name -> dense prediction ``[H, W, D]`` at the truth's positions.
        num_classes: label classes to score; if ``None``, 13 layers, or 14 when the truth
            or a prediction holds fluid (label 13).
        lpips: also compute LPIPS (left empty, with a one-line notice, when unavailable).

    Returns:
        One row per (subset, method), gap rows first: ``eye_id, method, subset, n_bscans,
        psnr, ssim, mae, mse, lpips, dice_mean, dice_<class>..., assd_mean, hd95_mean``
        and, for eyes with fluid, ``retina_dice, fluid_dice, ilm_assd``. Label columns are
        ``None`` when the truth or the method has no labels; NaN where a score is undefined
        (e.g. Dice of a class absent from both). A subset without B-scans gets no rows.
    """
    mask = _check_mask(truth, input_mask)
    for method, prediction in predictions.items():
        if not _METHOD_NAME.fullmatch(method):
            raise DataError(f"method name {method!r} must be letters, digits, '_', '.', '+' or '-'")
        if prediction.shape != truth.shape:
            raise DataError(
                f"eye {truth.eye_id}: method {method!r} predicted shape {prediction.shape}, "
                f"the ground truth is {truth.shape}"
            )
    pathology = truth.labels is not None and bool(np.any(truth.labels == FLUID_LABEL))
    largest = {method: int(p.labels.max()) for method, p in predictions.items() if p.labels is not None}
    if truth.labels is not None:
        largest["ground truth"] = int(truth.labels.max())
    if num_classes is None:
        num_classes = NUM_LAYER_CLASSES + int(any(value >= FLUID_LABEL for value in largest.values()))
    for source, value in largest.items():
        if value >= num_classes:
            raise DataError(
                f"eye {truth.eye_id}: {source} holds label {value} but num_classes is {num_classes}; "
                f"expected labels 0..{num_classes - 1}"
            )
    names = class_names(num_classes)
    if lpips and not metrics.lpips_available():
        _lpips_unavailable_notice()
        lpips = False
    statistics = {
        method: BscanStatistics.compute(prediction, truth, num_classes, lpips)
        for method, prediction in predictions.items()
    }
    return _subset_rows(
        truth, mask, list(predictions), lambda method, subset, index: statistics[method].scores(index, names, pathology)
    )


def _subset_rows(
    truth: Eye, mask: np.ndarray, methods: list[str], scores: Callable[[str, str, np.ndarray], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per B-scan subset that has B-scans and per method: ``eye_id, method, subset, n_bscans``
    and ``scores(method, subset, B-scan index)``."""
    rows: list[dict[str, Any]] = []
    for subset in SUBSETS:
        index = subset_index(mask, subset)
        if index.size == 0:
            continue
        for method in methods:
            rows.append(
                {
                    "eye_id": truth.eye_id,
                    "method": method,
                    "subset": subset,
                    "n_bscans": int(index.size),
                    **scores(method, subset, index),
                }
            )
    return rows


def thickness_errors(truth: Eye, predictions: dict[str, MethodPrediction]) -> list[dict[str, Any]]:
    """Mean absolute layer-thickness error (µm) per ETDRS sector of every method that predicts
    labels, against the truth's dense labels (:func:`retina_data.thickness.etdrs_errors`), over
    all B-scans of the densified volume: what a clinician would read from it. Rows
    ``{eye_id, method, group, C, S1, ..., T2}``; none for an eye without layer labels."""
    if truth.labels is None or int(truth.labels.max(initial=0)) > FLUID_LABEL:
        return []
    rows = []
    for method, prediction in predictions.items():
        if prediction.labels is None:
            continue
        predicted = replace(truth, oct=np.asarray(prediction.intensity, dtype=np.float32), labels=prediction.labels)
        rows += [
            {"eye_id": row["eye_id"], "method": method, **{k: v for k, v in row.items() if k != "eye_id"}}
            for row in etdrs_errors(predicted, truth)
        ]
    return rows


def _has_fluid(truth: Eye) -> bool:
    return truth.labels is not None and bool(np.any(truth.labels == FLUID_LABEL))


def reference_bscan_metrics(
    prediction: MethodPrediction, truth: Eye, *, sampling: reference_metrics.BorderSampling = "swapped"
) -> dict[str, np.ndarray]:
    """The paper's metrics of every B-scan ``[D]`` of one prediction, in the paper's units.

    Intensity: ``psnr`` (dB), ``ssim_x100``, ``mae_x100``, ``mse_x100``. With labels in both:
    ``dice_pct`` and the upper-border ``assd_um``, ``hd95_um``, ``hd_um`` of the 8 remapped
    classes; for an eye with fluid also ``retina_dice_pct``, ``fluid_dice_pct`` and the ILM's
    ``ilm_assd_um``, ``ilm_hd95_um``, ``ilm_hd_um`` (CSCR labelling). Distances take the
    truth's spacing in mm.
    """
    intensity = reference_metrics.intensity_metrics_per_bscan(prediction.intensity, truth.oct)
    values = {
        "psnr": intensity["psnr"],
        "ssim_x100": 100.0 * intensity["ssim"],
        "mae_x100": 100.0 * intensity["mae"],
        "mse_x100": 100.0 * intensity["mse"],
    }
    if prediction.labels is None or truth.labels is None:
        return values
    spacing_hw = truth.spacing[:2]
    pred8 = reference_metrics.remap_reference_classes(prediction.labels)
    truth8 = reference_metrics.remap_reference_classes(truth.labels)
    values["dice_pct"] = 100.0 * reference_metrics.dice_per_bscan(pred8, truth8)
    borders = reference_metrics.border_metrics_per_bscan(pred8, truth8, spacing_hw, sampling)
    values.update({f"{name}_um": UM_PER_MM * borders[name] for name in ("assd", "hd95", "hd")})
    if _has_fluid(truth):
        fluid = reference_metrics.fluid_metrics_per_bscan(
            reference_metrics.cscr_labels(prediction.labels),
            reference_metrics.cscr_labels(truth.labels),
            spacing_hw,
            sampling,
        )
        values["retina_dice_pct"] = 100.0 * fluid["retina_dice"]
        values["fluid_dice_pct"] = 100.0 * fluid["fluid_dice"]
        values.update({f"{name}_um": UM_PER_MM * fluid[name] for name in ("ilm_assd", "ilm_hd95", "ilm_hd")})
    return values


def score_eye_reference(
    truth: Eye,
    input_mask: np.ndarray,
    predictions: dict[str, MethodPrediction],
    *,
    sampling: reference_metrics.BorderSampling = "swapped",
    lpips: dict[tuple[str, str], float | None] | None = None,
) -> list[dict[str, Any]]:
    """The paper's metric set for every method on the gap, input and all B-scans of one eye.

    Each metric is the mean over the subset's B-scans of its per-B-scan value
    (:func:`reference_bscan_metrics`; NaN B-scans ignored, e.g. the fluid Dice of a B-scan
    without fluid).

    Args:
        truth: the dense ground-truth eye.
        input_mask: ``[D]`` bool, true for the B-scans the methods were given.
        predictions: method name -> dense prediction ``[H, W, D]``.
        sampling: the border distances' sampling (``EVALUATION.BORDER_SAMPLING``).
        lpips: (method, subset) -> mean per-B-scan LPIPS, taken over from :func:`score_eye`
            (the same per-B-scan mean), or ``None``.

    Returns:
        One row per (subset, method), gap rows first: ``eye_id, method, subset, n_bscans,
        psnr, ssim_x100, mae_x100, mse_x100, lpips, dice_pct, assd_um, hd95_um, hd_um`` and,
        for eyes with fluid, ``retina_dice_pct, fluid_dice_pct, ilm_assd_um, ilm_hd95_um,
        ilm_hd_um``; label columns ``None`` without labels.
    """
    mask = _check_mask(truth, input_mask)
    columns = ["psnr", "ssim_x100", "mae_x100", "mse_x100", "lpips", *REFERENCE_LABEL_COLUMNS]
    columns += REFERENCE_FLUID_COLUMNS if _has_fluid(truth) else ()
    per_bscan = {
        method: reference_bscan_metrics(prediction, truth, sampling=sampling)
        for method, prediction in predictions.items()
    }

    def scores(method: str, subset: str, index: np.ndarray) -> dict[str, Any]:
        values = per_bscan[method]
        row = {
            column: metrics.mean_ignoring_nan(values[column][index]) if column in values else None for column in columns
        }
        row["lpips"] = (lpips or {}).get((method, subset))
        return row

    return _subset_rows(truth, mask, list(per_bscan), scores)


class RunEvaluator:
    """Scores test eyes one at a time and writes their results; :meth:`finish` writes the summary.

    Lets a caller predict, score and release one eye at a time, so a test set of full-size
    volumes never has to sit in memory at once. Results go under ``out_dir`` as described
    in :func:`evaluate_run`. A folder that already holds evaluation results is refused at
    construction, before anything is written, unless ``overwrite``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        save_nifti: bool = True,
        figures: bool = True,
        lpips: bool = False,
        overwrite: bool = False,
        num_classes: int | None = None,
        exclude_subjects: list[str] | None = None,
        border_sampling: reference_metrics.BorderSampling = "swapped",
        method_names: dict[str, str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.save_nifti = save_nifti
        self.figures = figures
        self.lpips = lpips
        self.overwrite = overwrite
        self.num_classes = num_classes
        self.exclude_subjects = set(exclude_subjects or [])
        self.border_sampling = border_sampling
        self.method_names = dict(method_names or {})
        self.rows: list[dict[str, Any]] = []
        self.reference_rows: list[dict[str, Any]] = []
        self.reference_summary: Summary | None = None
        self.thickness_rows: list[dict[str, Any]] = []
        self.thickness_summary: Summary | None = None
        self._eye_ids: set[str] = set()
        self._excluded_eyes: set[str] = set()
        existing = reporting.existing_outputs(self.out_dir)
        if existing and not overwrite:
            shown = ", ".join(str(path) for path in existing[:3]) + (" ..." if len(existing) > 3 else "")
            raise OutputExistsError(
                f"{self.out_dir}: already holds evaluation results ({shown}); pass --overwrite to replace them"
            )

    def add_eye(
        self, truth: Eye, input_mask: np.ndarray, predictions: dict[str, MethodPrediction]
    ) -> list[dict[str, Any]]:
        """Score one eye (see :func:`score_eye`), write its metrics, volumes and figure; return its rows."""
        if truth.eye_id in self._eye_ids:
            raise DataError(f"eye {truth.eye_id} was already evaluated in this run")
        rows = score_eye(truth, input_mask, predictions, num_classes=self.num_classes, lpips=self.lpips)
        lpips = {(row["method"], row["subset"]): row["lpips"] for row in rows}
        self.reference_rows.extend(
            score_eye_reference(truth, input_mask, predictions, sampling=self.border_sampling, lpips=lpips)
        )
        if truth.subject in self.exclude_subjects:
            self._excluded_eyes.add(truth.eye_id)
        self.thickness_rows.extend(thickness_errors(truth, predictions))
        reporting.write_eye_metrics(self.out_dir, truth, input_mask, rows, overwrite=self.overwrite)
        if self.save_nifti:
            names = class_names(self.num_classes or len(label_names(with_fluid=_has_fluid(truth))))
            for method, prediction in predictions.items():
                reporting.write_prediction_nifti(
                    self.out_dir, truth, method, prediction, overwrite=self.overwrite, label_names=names
                )
        if self.figures:
            plots.eye_figure(
                truth,
                input_mask,
                predictions,
                reporting.figure_path(self.out_dir, truth.eye_id),
                overwrite=self.overwrite,
            )
        self._eye_ids.add(truth.eye_id)
        self.rows.extend(rows)
        return rows

    def _summarised(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [row for row in rows if row["eye_id"] not in self._excluded_eyes]

    def finish(self) -> Summary:
        """Write ``metrics_all.csv``, ``summary.csv``, ``summary.md`` and their ``_reference``
        counterparts (the paper's metric set, kept in :attr:`reference_summary`); return the
        summary. Eyes of the excluded subjects are in the ``metrics*`` files only."""
        if not self.rows:
            raise DataError(f"{self.out_dir}: no eye was evaluated, so there is nothing to summarise")
        if not self._summarised(self.rows):
            raise DataError(
                f"EVALUATION.EXCLUDE_SUBJECTS = {sorted(self.exclude_subjects)} leaves out every "
                "evaluated eye; expected at least one eye in the summary"
            )
        summary = summarise(self._summarised(self.rows), method_names=self.method_names)
        write_result_tables(self.out_dir, summary, all_rows=self.rows, per_eye=False, overwrite=self.overwrite)
        self.reference_summary = summarise(self._summarised(self.reference_rows), REFERENCE_METRICS, self.method_names)
        write_result_tables(
            self.out_dir,
            self.reference_summary,
            all_rows=self.reference_rows,
            protocol=REFERENCE_PROTOCOL,
            per_eye=False,
            overwrite=self.overwrite,
        )
        if self._summarised(self.thickness_rows):
            self.thickness_summary = Summary.from_rows(
                self._summarised(self.thickness_rows),
                THICKNESS_KEYS,
                THICKNESS_METRICS,
                headings={**HEADINGS, "group": "Layers"},
                names=self.method_names,
            )
            write_result_tables(
                self.out_dir,
                self.thickness_summary,
                all_rows=self.thickness_rows,
                protocol=THICKNESS_PROTOCOL,
                per_eye=False,
                overwrite=self.overwrite,
            )
        return summary


def evaluate_run(
    truth_eyes: list[Eye],
    input_masks: dict[str, np.ndarray],
    predictions: dict[str, dict[str, MethodPrediction]],
    out_dir: str | Path,
    *,
    save_nifti: bool = True,
    figures: bool = True,
    lpips: bool = False,
    overwrite: bool = False,
    num_classes: int | None = None,
    exclude_subjects: list[str] | None = None,
    border_sampling: reference_metrics.BorderSampling = "swapped",
    method_names: dict[str, str] | None = None,
) -> tuple[Summary, Summary]:
    """Score every test eye and write the results under ``out_dir``.

    Writes ``metrics/<eye_id>.csv`` + ``.json`` (one row per method and subset),
    ``metrics_all.csv``, ``summary.csv`` + ``summary.md`` (mean ± std over eyes per method
    and subset, gap rows first), the same three for the paper's metric set
    (``metrics_all_reference.csv``, ``summary_reference.csv|md``), ``nifti/<eye_id>_<method>_intensity.nii.gz`` (+
    ``_labels.nii.gz``) at the truth's spacing and B-scan positions, and
    ``figures/<eye_id>.png``. All files are written atomically; a folder that already
    holds results is refused before anything is written unless ``overwrite``. To keep only
    one eye's predictions in memory at a time, use :class:`RunEvaluator` directly.

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
        exclude_subjects: subjects left out of the summaries (still in the ``metrics*`` files).
        border_sampling: sampling of the paper's border distances (see :func:`score_eye_reference`).
        method_names: method -> name in the Markdown tables.

    Returns:
        The :class:`Summary` of our metrics and that of the paper's metric set (``summary_reference``).
    """
    for eye in truth_eyes:
        for name, table in (("input mask", input_masks), ("predictions", predictions)):
            if eye.eye_id not in table:
                raise DataError(f"eye {eye.eye_id}: no {name} given to the evaluation")
    evaluator = RunEvaluator(
        out_dir,
        save_nifti=save_nifti,
        figures=figures,
        lpips=lpips,
        overwrite=overwrite,
        num_classes=num_classes,
        exclude_subjects=exclude_subjects,
        border_sampling=border_sampling,
        method_names=method_names,
    )
    for eye in tqdm(truth_eyes, desc="evaluating", unit="eye"):
        evaluator.add_eye(eye, input_masks[eye.eye_id], predictions[eye.eye_id])
    summary = evaluator.finish()
    assert evaluator.reference_summary is not None  # finish() summarises the paper's metric set too
    return summary, evaluator.reference_summary
