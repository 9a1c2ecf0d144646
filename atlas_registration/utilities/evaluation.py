"""Scoring a registration and writing the result tables of the atlas experiments.

One row (a flat ``dict``) per eye and method: :func:`registration_metrics` computes it,
the caller adds ``eye_id``, ``method`` and, in the resolution experiment, ``factor`` (the
B-scan subsampling factor), and :func:`write_metrics_tables` writes

::

    OUT_DIR/metrics/<eye_id>.csv   the rows of one eye (every method)
    OUT_DIR/metrics_all.csv        every row
    OUT_DIR/summary.csv            mean, std and count of every numeric column per group
    OUT_DIR/summary.md             the same as a Markdown table, "mean ± std"

for our protocol, and the same files with ``_reference`` (``metrics_reference/``,
``metrics_reference_all.csv``, ``summary_reference.csv|md``) for the paper's protocol
(``protocol="reference"``: the 2-D rows of :mod:`atlas_registration.utilities.bscan_metrics`).

Groups are the distinct ``(method,)`` or ``(method, factor)`` values. ``std`` is the sample
standard deviation over eyes (``ddof=1``; NaN for a single eye); NaN metric values (a class
absent from both volumes) are left out of that metric's mean.

Metric columns: ``dice_<k>`` for every class ``k`` and ``dice_mean`` over the foreground
classes 1..K-1; ``assd_mean`` / ``hd95_mean``: symmetric average and 95th-percentile
surface distance (mm) between the 3-D region of each foreground class in the two volumes
(MONAI, via :func:`retina_data.metrics.surface_distances`), averaged over classes;
``ssim`` (mean over B-scans); ``pct_nonpositive_jacobian`` (percentage of voxels where the
deformation folds); ``time_s``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atlas_registration.utilities.jacobian import jacobian_determinant, nonpositive_fraction
from retina_data.files import atomic_write_text, refuse_existing
from retina_data.metrics import dice_per_class, foreground_mean, ssim, surface_distances

GROUP_KEYS: tuple[str, ...] = ("method", "factor")
"""Columns that define a summary group, when present in the rows."""

RESOLUTION_FACTORS: tuple[int, ...] = (1, 8, 16, 32)
"""B-scan subsampling factors of the resolution experiment."""


def registration_metrics(warped_labels: np.ndarray, target_labels: np.ndarray,
                         spacing_mm: Sequence[float], num_classes: int,
                         warped_intensity: np.ndarray | None = None,
                         target_intensity: np.ndarray | None = None,
                         displacement_mm: np.ndarray | None = None,
                         seconds: float | None = None) -> dict[str, float]:
    """Metrics of one registered eye (see the module docstring for the columns).

    Args:
        warped_labels: atlas labels warped onto the eye ``[H, W, D]``, values in ``0..K-1``.
        target_labels: the eye's labels ``[H, W, D]`` (same class set).
        spacing_mm: ``(dH, dW, dD)`` in mm.
        num_classes: ``K``.
        warped_intensity, target_intensity: ``[H, W, D]`` intensities for ``ssim`` (both or
            neither).
        displacement_mm: ``u [3, H, W, D]`` for ``pct_nonpositive_jacobian``.
        seconds: registration time, reported as ``time_s``.

    Returns:
        ``{column: value}``; only the columns whose inputs were given.
    """
    dice = dice_per_class(warped_labels, target_labels, num_classes)
    row: dict[str, float] = {f"dice_{k}": float(value) for k, value in enumerate(dice)}
    row["dice_mean"] = foreground_mean(dice)
    distances = surface_distances(warped_labels, target_labels, spacing_mm, range(1, num_classes))
    row["assd_mean"] = _nanmean(distances["assd"])
    row["hd95_mean"] = _nanmean(distances["hd95"])
    if (warped_intensity is None) != (target_intensity is None):
        raise ValueError("give both warped_intensity and target_intensity for SSIM, or neither")
    if warped_intensity is not None:
        row["ssim"] = ssim(warped_intensity, target_intensity)
    if displacement_mm is not None:
        det = jacobian_determinant(displacement_mm, spacing_mm)
        row["pct_nonpositive_jacobian"] = 100.0 * nonpositive_fraction(det)
    if seconds is not None:
        row["time_s"] = float(seconds)
    return row


def _nanmean(values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every key of the rows, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _format(value: Any) -> str:
    if value is None:
        return ""
    if _is_number(value):
        return repr(float(value)) if isinstance(value, (float, np.floating)) else str(int(value))
    return str(value)


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(row.get(column)) for column in columns])
    return buffer.getvalue()


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std of the non-NaN values (NaN when there are none, std NaN for one)."""
    finite = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if finite.size == 0:
        return float("nan"), float("nan")
    std = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return float(finite.mean()), std


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per group: the group keys, ``n`` (eyes) and ``<metric>_mean`` /
    ``<metric>_std`` for every numeric column, in first-seen group order."""
    keys = [key for key in GROUP_KEYS if any(key in row for row in rows)]
    metrics = [c for c in _columns(rows) if c not in keys
               and any(_is_number(row.get(c)) for row in rows)]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(key) for key in keys), []).append(row)
    summary = []
    for group, members in groups.items():
        out: dict[str, Any] = dict(zip(keys, group))
        out["n"] = len(members)
        for metric in metrics:
            values = [float(m[metric]) for m in members if _is_number(m.get(metric))]
            out[f"{metric}_mean"], out[f"{metric}_std"] = _mean_std(values)
        summary.append(out)
    return summary


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.4g}" if math.isnan(std) else f"{mean:.4g} ± {std:.2g}"


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def summary_markdown(summary: list[dict[str, Any]], metrics: Sequence[str] | None = None) -> str:
    """A Markdown table of :func:`summarise`'s rows: one ``mean ± std`` cell per metric.

    ``metrics``: the metric columns to show, those present in order (``None``: all).
    """
    if not summary:
        return ""
    keys = [key for key in (*GROUP_KEYS, "n") if key in summary[0]]
    present = [c[: -len("_mean")] for c in summary[0] if c.endswith("_mean") and f"{c[:-5]}_std" in summary[0]]
    metrics = present if metrics is None else [m for m in metrics if m in present]
    body = [[str(row[key]) for key in keys] + [_cell(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics]
            for row in summary]
    return _markdown(keys + metrics, body)


def table_names(protocol: str = "") -> dict[str, str]:
    """File and folder names of one protocol's tables: ``metrics``, ``metrics_all.csv``, ``summary.csv|md``
    for ours (``""``), the same with ``_<protocol>`` for another."""
    suffix = f"_{protocol}" if protocol else ""
    return {"metrics": f"metrics{suffix}", "all": f"metrics{suffix}_all.csv", "csv": f"summary{suffix}.csv",
            "md": f"summary{suffix}.md"}


def write_metrics_tables(rows: list[dict[str, Any]], out_dir: str | Path,
                         overwrite: bool = False, protocol: str = "") -> list[Path]:
    """Write the per-eye CSVs, ``metrics_all.csv``, ``summary.csv`` and ``summary.md`` of one protocol.

    Args:
        rows: one dict per eye and method, each with ``eye_id`` and ``method``.
        out_dir: destination folder.
        overwrite: replace existing tables; otherwise nothing is written if any exists.
        protocol: ``""`` (ours) or a name such as ``"reference"`` appended to every file name
            (:func:`table_names`).

    Returns:
        Every path written.

    Raises:
        OutputExistsError: a table exists and ``overwrite`` is false.
    """
    missing = [i for i, row in enumerate(rows) if "eye_id" not in row or "method" not in row]
    if missing:
        raise ValueError(f"metric rows {missing} lack 'eye_id' or 'method'")
    out_dir = Path(out_dir)
    columns = _columns(rows)
    per_eye: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        per_eye.setdefault(str(row["eye_id"]), []).append(row)
    summary = summarise(rows)
    names = table_names(protocol)
    texts = {out_dir / names["metrics"] / f"{eye}.csv": _csv_text(eye_rows, columns)
             for eye, eye_rows in per_eye.items()}
    texts[out_dir / names["all"]] = _csv_text(rows, columns)
    texts[out_dir / names["csv"]] = _csv_text(summary, _columns(summary))
    texts[out_dir / names["md"]] = summary_markdown(summary)
    for path in texts:
        refuse_existing(path, overwrite)
    return [atomic_write_text(path, text, overwrite=overwrite) for path, text in texts.items()]


def resolution_summary(rows: list[dict[str, Any]], metric: str = "dice_mean"
                       ) -> dict[str, dict[int, tuple[float, float]]]:
    """``{method: {factor: (mean, std)}}`` of ``metric`` over eyes, from rows with a ``factor``."""
    results: dict[str, dict[int, tuple[float, float]]] = {}
    for row in summarise([row for row in rows if "factor" in row]):
        mean, std = row.get(f"{metric}_mean", float("nan")), row.get(f"{metric}_std", float("nan"))
        results.setdefault(str(row["method"]), {})[int(row["factor"])] = (mean, std)
    return results


def resolution_table(rows: list[dict[str, Any]], metric: str = "dice_mean",
                     factors: Sequence[int] = RESOLUTION_FACTORS) -> str:
    """Markdown table of ``metric`` (mean ± std over eyes): methods × B-scan factors.

    Args:
        rows: metric rows with ``method`` and ``factor`` (B-scan subsampling factor).
        metric: the column to tabulate.
        factors: the factors, one column each; a method without a factor shows "–".
    """
    results = resolution_summary(rows, metric)
    header = ["method"] + [f"1/{f}" if f > 1 else "full" for f in factors]
    body = [[method] + [_cell(*by_factor.get(f, (float("nan"), float("nan")))) for f in factors]
            for method, by_factor in results.items()]
    return f"{metric} by B-scan subsampling factor\n\n" + _markdown(header, body)
