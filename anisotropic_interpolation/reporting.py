"""Result files of an interpolation evaluation: metric tables, the summary, NIfTI volumes.

Layout under a results folder::

    metrics/<eye_id>.csv, .json     one row per method and subset
    metrics_all.csv                 every row of every eye
    summary.csv, summary.md         mean ± std over eyes per method and subset, gap rows first
    metrics_all_reference.csv       the paper's metric set, every row of every eye
    summary_reference.csv, .md      its mean ± std over eyes, in the paper's units
    nifti/<eye_id>_<method>_intensity.nii.gz, _labels.nii.gz
    figures/<eye_id>.png

Missing values (a score that is undefined, or a column that does not apply) are empty in
CSV and ``null`` in JSON; an infinite PSNR (a perfect reproduction) is ``inf`` in CSV and
the string ``"inf"`` in JSON. Distances are in mm everywhere except the Markdown table,
which shows them in µm. Standard deviations are over eyes with ``ddof = 1``; with a single
eye only the mean is shown.

The paper's metric set (:mod:`retina_data.reference_metrics`) is stored in the paper's
units everywhere (MSE and MAE x 100, SSIM x 100, Dice in %, distances in µm), its columns
named after them. Subjects in ``EVALUATION.EXCLUDE_SUBJECTS`` are in the ``metrics*`` files
but not in the summaries. The Markdown tables name the classical baselines
"nearest/linear/cubic (true input labels)": their label columns interpolate the test eye's
true labels of the input B-scans, which no other method is given.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from retina_data.eye import Eye
from retina_data.files import atomic_write_text
from retina_data.nifti import write_nifti

if TYPE_CHECKING:
    from anisotropic_interpolation.evaluation import MethodPrediction

SUMMARY_METRICS: tuple[tuple[str, str, str, float], ...] = (
    ("psnr", "PSNR (dB) ↑", ".2f", 1.0),
    ("ssim", "SSIM ↑", ".4f", 1.0),
    ("mae", "MAE ↓", ".4f", 1.0),
    ("mse", "MSE ↓", ".5f", 1.0),
    ("lpips", "LPIPS ↓", ".4f", 1.0),
    ("dice_mean", "Dice ↑", ".4f", 1.0),
    ("assd_mean", "ASSD (µm) ↓", ".2f", 1000.0),
    ("hd95_mean", "HD95 (µm) ↓", ".2f", 1000.0),
    ("retina_dice", "Retina Dice ↑", ".4f", 1.0),
    ("fluid_dice", "Fluid Dice ↑", ".4f", 1.0),
    ("ilm_assd", "ILM ASSD (µm) ↓", ".2f", 1000.0),
)
"""(column, Markdown heading, number format, Markdown scale) of the metrics summarised over
eyes. Distances are stored in mm (CSV, JSON, :class:`Summary`) and shown in µm in Markdown."""
REFERENCE_METRICS: tuple[tuple[str, str, str, float], ...] = (
    ("psnr", "PSNR (dB) ↑", ".2f", 1.0),
    ("ssim_x100", "SSIM ×100 ↑", ".2f", 1.0),
    ("mae_x100", "MAE ×100 ↓", ".3f", 1.0),
    ("mse_x100", "MSE ×100 ↓", ".3f", 1.0),
    ("lpips", "LPIPS ↓", ".4f", 1.0),
    ("dice_pct", "Dice (%) ↑", ".2f", 1.0),
    ("assd_um", "ASSD (µm) ↓", ".2f", 1.0),
    ("hd95_um", "HD95 (µm) ↓", ".2f", 1.0),
    ("hd_um", "HD (µm) ↓", ".2f", 1.0),
    ("retina_dice_pct", "Retina Dice (%) ↑", ".2f", 1.0),
    ("fluid_dice_pct", "Fluid Dice (%) ↑", ".2f", 1.0),
    ("ilm_assd_um", "ILM ASSD (µm) ↓", ".2f", 1.0),
    ("ilm_hd95_um", "ILM HD95 (µm) ↓", ".2f", 1.0),
    ("ilm_hd_um", "ILM HD (µm) ↓", ".2f", 1.0),
)
"""The paper's metric set, already in the paper's units in every file."""
SUMMARY_FILES: tuple[str, ...] = ("metrics_all.csv", "summary.csv", "summary.md")
REFERENCE_SUMMARY_FILES: tuple[str, ...] = ("metrics_all_reference.csv", "summary_reference.csv",
                                            "summary_reference.md")
RESULT_FOLDERS: tuple[str, ...] = ("metrics", "nifti", "figures")
SUBSET_ORDER: tuple[str, ...] = ("gap", "input", "all")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _csv_value(value: Any) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Union of the rows' keys, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV text of ``rows`` (a header with the union of their columns)."""
    buffer = io.StringIO()
    columns = columns_of(rows)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(column)) for column in columns])
    return buffer.getvalue()


def to_json(record: Any) -> str:
    """Strict JSON text of nested dicts/lists of scores (see the module note on NaN/inf)."""
    def clean(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: clean(value) for key, value in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(value) for value in item]
        if isinstance(item, np.integer):
            return int(item)
        return _json_value(item)

    return json.dumps(clean(record), indent=1, allow_nan=False) + "\n"


def metrics_paths(out_dir: Path, eye_id: str) -> tuple[Path, Path]:
    """``(metrics/<eye_id>.csv, metrics/<eye_id>.json)``."""
    return out_dir / "metrics" / f"{eye_id}.csv", out_dir / "metrics" / f"{eye_id}.json"


def nifti_paths(out_dir: Path, eye_id: str, method: str) -> tuple[Path, Path]:
    """``(nifti/<eye_id>_<method>_intensity.nii.gz, ..._labels.nii.gz)``."""
    folder = out_dir / "nifti"
    return folder / f"{eye_id}_{method}_intensity.nii.gz", folder / f"{eye_id}_{method}_labels.nii.gz"


def figure_path(out_dir: Path, eye_id: str) -> Path:
    """``figures/<eye_id>.png``."""
    return out_dir / "figures" / f"{eye_id}.png"


def existing_outputs(out_dir: Path) -> list[Path]:
    """Result files of an earlier evaluation already in ``out_dir`` (summary files and folder contents)."""
    found = [out_dir / name for name in SUMMARY_FILES + REFERENCE_SUMMARY_FILES if (out_dir / name).exists()]
    for folder in RESULT_FOLDERS:
        if (out_dir / folder).is_dir():
            found += sorted(path for path in (out_dir / folder).iterdir())
    return found


def write_eye_metrics(out_dir: Path, eye: Eye, input_mask: np.ndarray, rows: list[dict[str, Any]],
                      *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write one eye's rows as CSV and as JSON (with its geometry and input B-scans)."""
    csv_path, json_path = metrics_paths(out_dir, eye.eye_id)
    atomic_write_text(csv_path, rows_to_csv(rows), overwrite=overwrite)
    record = {
        "eye_id": eye.eye_id,
        "shape": list(eye.shape),
        "spacing_mm": list(eye.spacing),
        "bscan_positions_mm": eye.bscan_positions.tolist(),
        "input_bscans": np.flatnonzero(input_mask).tolist(),
        "rows": rows,
    }
    atomic_write_text(json_path, to_json(record), overwrite=overwrite)
    return csv_path, json_path


def write_prediction_nifti(out_dir: Path, eye: Eye, method: str, prediction: MethodPrediction,
                           *, overwrite: bool = False) -> list[Path]:
    """Write a predicted volume (and labels) at the truth's spacing and B-scan positions."""
    intensity_path, labels_path = nifti_paths(out_dir, eye.eye_id, method)
    meta = {"eye_id": eye.eye_id, "method": method}
    written = [write_nifti(intensity_path, prediction.intensity, eye.spacing, eye.bscan_positions,
                           {**meta, "content": "intensity"}, overwrite=overwrite)]
    if prediction.labels is not None:
        written.append(write_nifti(labels_path, prediction.labels, eye.spacing, eye.bscan_positions,
                                   {**meta, "content": "labels"}, overwrite=overwrite))
    return written


@dataclass(frozen=True)
class Statistic:
    """Mean and sample standard deviation (ddof = 1) of one metric over ``n`` eyes."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Statistic:
        array = np.asarray(values, dtype=np.float64)
        if array.size == 0:
            return cls(float("nan"), float("nan"), 0)
        mean = float(array.mean())
        finite = np.isfinite(array).all()
        std = float(array.std(ddof=1)) if array.size > 1 and finite else float("nan")
        return cls(mean, std, int(array.size))

    def format(self, spec: str, scale: float = 1.0) -> str:
        """``"mean ± std"`` times ``scale``; the mean alone when the std is undefined; ``–`` without values."""
        if self.n == 0:
            return "–"
        if math.isnan(self.std):
            return format(self.mean * scale, spec)
        return f"{format(self.mean * scale, spec)} ± {format(self.std * scale, spec)}"


@dataclass
class Summary:
    """Per-eye rows of an evaluation and their statistics per (method, subset).

    ``summary.mean("linear", "gap", "psnr")`` is the mean gap PSNR of linear interpolation
    over all eyes.
    """

    rows: list[dict[str, Any]]
    groups: list[tuple[str, str]] = field(default_factory=list)
    statistics: dict[tuple[str, str, str], Statistic] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)
    metric_table: tuple[tuple[str, str, str, float], ...] = SUMMARY_METRICS
    """(column, Markdown heading, number format, Markdown scale) of the summarised metrics."""
    method_names: dict[str, str] = field(default_factory=dict)
    """Method -> name shown in the Markdown table (the method itself when absent)."""

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]],
                  metric_table: tuple[tuple[str, str, str, float], ...] = SUMMARY_METRICS,
                  method_names: dict[str, str] | None = None) -> Summary:
        """Summarise rows of :func:`~anisotropic_interpolation.evaluation.score_eye` (or of
        :func:`~anisotropic_interpolation.evaluation.score_eye_reference` with
        :data:`REFERENCE_METRICS`)."""
        methods = list(dict.fromkeys(row["method"] for row in rows))
        subsets = [s for s in SUBSET_ORDER if any(row["subset"] == s for row in rows)]
        groups = [(method, subset) for subset in subsets for method in methods
                  if any(row["method"] == method and row["subset"] == subset for row in rows)]
        present = [name for name, _, _, _ in metric_table
                   if any(not _is_missing(row.get(name)) for row in rows)]
        statistics = {}
        for method, subset in groups:
            chosen = [row for row in rows if row["method"] == method and row["subset"] == subset]
            for name in present:
                values = [float(row[name]) for row in chosen if not _is_missing(row.get(name))]
                statistics[(method, subset, name)] = Statistic.of(values)
        return cls(rows=rows, groups=groups, statistics=statistics, metrics=present, metric_table=metric_table,
                   method_names=dict(method_names or {}))

    def statistic(self, method: str, subset: str, metric: str) -> Statistic:
        """The :class:`Statistic` of ``metric`` for ``method`` on ``subset``."""
        try:
            return self.statistics[(method, subset, metric)]
        except KeyError:
            raise KeyError(f"no {metric!r} for method {method!r} on subset {subset!r}; "
                           f"methods/subsets: {self.groups}, metrics: {self.metrics}") from None

    def mean(self, method: str, subset: str, metric: str) -> float:
        """Mean of ``metric`` over eyes."""
        return self.statistic(method, subset, metric).mean

    def std(self, method: str, subset: str, metric: str) -> float:
        """Sample standard deviation of ``metric`` over eyes (NaN for one eye)."""
        return self.statistic(method, subset, metric).std

    def n_eyes(self, method: str, subset: str) -> int:
        """Number of eyes scored for ``method`` on ``subset``."""
        return len({row["eye_id"] for row in self.rows if row["method"] == method and row["subset"] == subset})

    def table_rows(self) -> list[dict[str, Any]]:
        """Rows of ``summary.csv``: method, subset, n_eyes, ``<metric>_mean``, ``<metric>_std``."""
        table = []
        for method, subset in self.groups:
            row: dict[str, Any] = {"method": method, "subset": subset, "n_eyes": self.n_eyes(method, subset)}
            for name in self.metrics:
                stat = self.statistics[(method, subset, name)]
                row[f"{name}_mean"] = stat.mean
                row[f"{name}_std"] = stat.std
            table.append(row)
        return table

    def table_markdown(self) -> str:
        """The summary as a Markdown table (mean ± std over eyes), gap rows first."""
        headings = {name: (title, spec, scale) for name, title, spec, scale in self.metric_table}
        header = ["Method", "B-scans", "Eyes", *(headings[name][0] for name in self.metrics)]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(self.metrics)) + "|"]
        for method, subset in self.groups:
            cells = [self.method_names.get(method, method), subset, str(self.n_eyes(method, subset))]
            cells += [self.statistics[(method, subset, name)].format(*headings[name][1:]) for name in self.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def print_summary(summary: Summary, stream: TextIO | None = None) -> None:
    """Print the summary table (Markdown) to ``stream`` (stdout by default)."""
    (stream or sys.stdout).write(summary.table_markdown())


def write_summary(out_dir: Path, summary: Summary, *, all_rows: list[dict[str, Any]] | None = None,
                  files: tuple[str, ...] = SUMMARY_FILES, overwrite: bool = False) -> list[Path]:
    """Write ``files`` (default ``metrics_all.csv``, ``summary.csv``, ``summary.md``): every row
    (``all_rows``, default the summary's), the summary table as CSV and as Markdown."""
    all_path, csv_path, md_path = (out_dir / name for name in files)
    atomic_write_text(all_path, rows_to_csv(summary.rows if all_rows is None else all_rows), overwrite=overwrite)
    atomic_write_text(csv_path, rows_to_csv(summary.table_rows()), overwrite=overwrite)
    atomic_write_text(md_path, summary.table_markdown(), overwrite=overwrite)
    return [all_path, csv_path, md_path]
