"""Result files of an interpolation evaluation: metric tables, the summary, NIfTI volumes.

Layout under a results folder::

    metrics/<eye_id>.csv, .json     one row per method and subset
    metrics_all.csv                 every row of every eye
    summary.csv, summary.md         mean ± std over eyes per method and subset, gap rows first
    metrics_all_reference.csv       the paper's metric set, every row of every eye
    summary_reference.csv, .md      its mean ± std over eyes, in the paper's units
    metrics_all_thickness.csv       per eye, method and layer group: mean |thickness error| (µm) per ETDRS sector
    summary_thickness.csv, .md      its mean ± std over eyes
    nifti/<eye_id>_<method>_intensity.nii.gz, _labels.nii.gz, label_names.itksnap.txt, .ctbl
    figures/<eye_id>.png

The tables are written by :mod:`retina_data.result_tables`, which the atlas tree uses too:
missing values (a score that is undefined, or a column that does not apply) are empty in
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

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from retina_data.eye import Eye
from retina_data.files import atomic_write_text
from retina_data.label_tables import write_label_tables
from retina_data.nifti import write_nifti
from retina_data.result_tables import Metric, Summary, csv_text, eye_table_path, table_names
from retina_data.thickness import ERROR_METRICS, ERROR_PROTOCOL

if TYPE_CHECKING:
    from anisotropic_interpolation.evaluation import MethodPrediction

SUMMARY_METRICS: tuple[Metric, ...] = (
    Metric("psnr", "PSNR (dB) ↑", ".2f"),
    Metric("ssim", "SSIM ↑", ".4f"),
    Metric("mae", "MAE ↓", ".4f"),
    Metric("mse", "MSE ↓", ".5f"),
    Metric("lpips", "LPIPS ↓", ".4f"),
    Metric("dice_mean", "Dice ↑", ".4f"),
    Metric("assd_mean", "ASSD (µm) ↓", ".2f", scale=1000.0),
    Metric("hd95_mean", "HD95 (µm) ↓", ".2f", scale=1000.0),
    Metric("retina_dice", "Retina Dice ↑", ".4f"),
    Metric("fluid_dice", "Fluid Dice ↑", ".4f"),
    Metric("ilm_assd", "ILM ASSD (µm) ↓", ".2f", scale=1000.0),
)
"""The metrics summarised over eyes. Distances are stored in mm (CSV, JSON, :class:`Summary`)
and shown in µm in Markdown."""
REFERENCE_METRICS: tuple[Metric, ...] = (
    Metric("psnr", "PSNR (dB) ↑", ".2f"),
    Metric("ssim_x100", "SSIM ×100 ↑", ".2f"),
    Metric("mae_x100", "MAE ×100 ↓", ".3f"),
    Metric("mse_x100", "MSE ×100 ↓", ".3f"),
    Metric("lpips", "LPIPS ↓", ".4f"),
    Metric("dice_pct", "Dice (%) ↑", ".2f"),
    Metric("assd_um", "ASSD (µm) ↓", ".2f"),
    Metric("hd95_um", "HD95 (µm) ↓", ".2f"),
    Metric("hd_um", "HD (µm) ↓", ".2f"),
    Metric("retina_dice_pct", "Retina Dice (%) ↑", ".2f"),
    Metric("fluid_dice_pct", "Fluid Dice (%) ↑", ".2f"),
    Metric("ilm_assd_um", "ILM ASSD (µm) ↓", ".2f"),
    Metric("ilm_hd95_um", "ILM HD95 (µm) ↓", ".2f"),
    Metric("ilm_hd_um", "ILM HD (µm) ↓", ".2f"),
)
"""The paper's metric set, already in the paper's units in every file."""
REFERENCE_PROTOCOL = "reference"
"""The protocol name of the paper's metric set in the file names (``summary_reference.md``)."""
THICKNESS_PROTOCOL = ERROR_PROTOCOL
"""The tables of layer-thickness errors per ETDRS sector (``summary_thickness.md``), as the atlas tree's."""
THICKNESS_METRICS: tuple[Metric, ...] = ERROR_METRICS
THICKNESS_KEYS: tuple[str, ...] = ("method", "group")
RESULT_FOLDERS: tuple[str, ...] = ("metrics", "nifti", "figures")
SUBSET_ORDER: tuple[str, ...] = ("gap", "input", "all")
GROUP_KEYS: tuple[str, ...] = ("method", "subset")
HEADINGS: dict[str, str] = {"method": "Method", "subset": "B-scans", "n_eyes": "Eyes"}
"""Markdown headings of the group columns and the eye count."""


def _json_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


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
    csv_path = eye_table_path(out_dir, eye_id)
    return csv_path, csv_path.with_suffix(".json")


def nifti_paths(out_dir: Path, eye_id: str, method: str) -> tuple[Path, Path]:
    """``(nifti/<eye_id>_<method>_intensity.nii.gz, ..._labels.nii.gz)``."""
    folder = out_dir / "nifti"
    return folder / f"{eye_id}_{method}_intensity.nii.gz", folder / f"{eye_id}_{method}_labels.nii.gz"


def figure_path(out_dir: Path, eye_id: str) -> Path:
    """``figures/<eye_id>.png``."""
    return out_dir / "figures" / f"{eye_id}.png"


def existing_outputs(out_dir: Path) -> list[Path]:
    """Result files of an earlier evaluation already in ``out_dir`` (summary files and folder contents)."""
    names = [table_names(protocol) for protocol in ("", REFERENCE_PROTOCOL, THICKNESS_PROTOCOL)]
    files = [name for table in names for name in (table.all_rows, table.summary_csv, table.summary_md)]
    found = [out_dir / name for name in files if (out_dir / name).exists()]
    for folder in RESULT_FOLDERS:
        if (out_dir / folder).is_dir():
            found += sorted(path for path in (out_dir / folder).iterdir())
    return found


def write_eye_metrics(
    out_dir: Path, eye: Eye, input_mask: np.ndarray, rows: list[dict[str, Any]], *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write one eye's rows as CSV and as JSON (with its geometry and input B-scans)."""
    csv_path, json_path = metrics_paths(out_dir, eye.eye_id)
    atomic_write_text(csv_path, csv_text(rows), overwrite=overwrite)
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


def write_prediction_nifti(
    out_dir: Path,
    eye: Eye,
    method: str,
    prediction: MethodPrediction,
    *,
    overwrite: bool = False,
    label_names: list[str] | None = None,
) -> list[Path]:
    """Write a predicted volume (and labels) at the truth's spacing and B-scan positions; with
    labels, the viewers' label tables (``label_names``) go beside them."""
    intensity_path, labels_path = nifti_paths(out_dir, eye.eye_id, method)
    meta = {"eye_id": eye.eye_id, "method": method}
    written = [
        write_nifti(
            intensity_path,
            prediction.intensity,
            eye.spacing,
            eye.bscan_positions,
            {**meta, "content": "intensity"},
            overwrite=overwrite,
        )
    ]
    if prediction.labels is not None:
        written.append(
            write_nifti(
                labels_path,
                prediction.labels,
                eye.spacing,
                eye.bscan_positions,
                {**meta, "content": "labels"},
                overwrite=overwrite,
            )
        )
        if label_names:
            written += write_label_tables(labels_path.parent, label_names)
    return written


def summarise(
    rows: list[dict[str, Any]],
    metrics: tuple[Metric, ...] = SUMMARY_METRICS,
    method_names: dict[str, str] | None = None,
) -> Summary:
    """Mean ± std over eyes per (method, subset), gap rows first, of rows of
    :func:`~anisotropic_interpolation.evaluation.score_eye` (or of
    :func:`~anisotropic_interpolation.evaluation.score_eye_reference` with :data:`REFERENCE_METRICS`).

    ``summary.mean("linear", "gap", "psnr")`` is the mean gap PSNR of linear interpolation over all eyes;
    ``method_names``: method -> name shown in the Markdown table.
    """
    return Summary.from_rows(
        rows,
        GROUP_KEYS,
        metrics,
        group_order=lambda group: SUBSET_ORDER.index(group[1]),
        headings=HEADINGS,
        names=method_names,
    )


def print_summary(summary: Summary, stream: TextIO | None = None) -> None:
    """Print the summary table (Markdown) to ``stream`` (stdout by default)."""
    (stream or sys.stdout).write(summary.table_markdown())
