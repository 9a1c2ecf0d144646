"""What a run writes: the result tables of both protocols, atlas volumes at any resolution,
per-eye volumes and figures.

Tables (written by :mod:`retina_data.result_tables`, the writer both trees share) under
``<run>/results``: for our protocol ``metrics/<eye_id>.csv``, ``metrics_all.csv``,
``summary.csv|md`` and ``resolution.md``; for the paper's the same with ``_reference``
(``metrics_reference/``, ``metrics_all_reference.csv``, ``summary_reference.csv|md``,
``resolution_reference.md``). Groups are the distinct ``(method, factor)`` values, in
first-seen order; every numeric column is summarised (Markdown: 4 significant digits, the std 2).
The layer-thickness errors of our protocol's registrations per ETDRS sector go to
``metrics_all_thickness.csv`` and ``summary_thickness.csv|md`` (groups ``(method, factor, layer
group)``), the tables the interpolation tree writes under the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates, regular_axes
from atlas_registration.datasets.eyes import from_atlas_orientation
from atlas_registration.fitting import EyeRegistration
from atlas_registration.inference import DisplacementFn, inverse_displacement, predict_on_grid, sample_volume
from atlas_registration.jacobian import jacobian_determinant
from atlas_registration.median_atlas import ATLAS_INTENSITY_FILE, ATLAS_LABELS_FILE
from atlas_registration.plots import plot_atlas_slices, plot_jacobian, plot_registration, plot_resolution
from retina_data.displacement_field import write_displacement_field
from retina_data.eye import Eye
from retina_data.files import atomic_write_text
from retina_data.label_tables import write_label_tables
from retina_data.nifti import write_nifti
from retina_data.result_tables import Metric, Statistic, Summary, numeric_columns, table_names, write_result_tables
from retina_data.thickness import ERROR_METRICS, ERROR_PROTOCOL

if TYPE_CHECKING:
    from atlas_registration.evaluation import EvaluationRows

GROUP_KEYS: tuple[str, ...] = ("method", "factor")
"""Columns that define a summary group, when present in the rows."""
THICKNESS_KEYS: tuple[str, ...] = ("method", "factor", "group")
"""The groups of the thickness-error summary."""

RESOLUTION_FACTORS: tuple[int, ...] = (1, 8, 16, 32)
"""B-scan subsampling factors of the resolution experiment."""


def summarise(rows: list[dict[str, Any]]) -> Summary:
    """Mean ± std over eyes of every numeric column per ``(method, factor)`` group."""
    keys = [key for key in GROUP_KEYS if any(key in row for row in rows)]
    metrics = [Metric(column, spec=".4g", std_spec=".2g") for column in numeric_columns(rows, exclude=keys)]
    return Summary.from_rows(rows, keys, metrics)


def _resolution_statistics(rows: list[dict[str, Any]], metric: str) -> dict[str, dict[int, Statistic]]:
    summary = Summary.from_rows([row for row in rows if "factor" in row], ("method", "factor"), [Metric(metric)])
    results: dict[str, dict[int, Statistic]] = {}
    for method, factor in summary.groups:
        stat = summary.statistics.get((method, factor, metric), Statistic.of([]))
        results.setdefault(str(method), {})[int(factor)] = stat
    return results


def resolution_summary(
    rows: list[dict[str, Any]], metric: str = "dice_mean"
) -> dict[str, dict[int, tuple[float, float]]]:
    """``{method: {factor: (mean, std)}}`` of ``metric`` over eyes, from rows with a ``factor``."""
    return {
        method: {factor: (stat.mean, stat.std) for factor, stat in by_factor.items()}
        for method, by_factor in _resolution_statistics(rows, metric).items()
    }


def resolution_table(
    rows: list[dict[str, Any]], metric: str = "dice_mean", factors: Sequence[int] = RESOLUTION_FACTORS
) -> str:
    """Markdown table of ``metric`` (mean ± std over eyes): methods × B-scan factors.

    Args:
        rows: metric rows with ``method`` and ``factor`` (B-scan subsampling factor).
        metric: the column to tabulate.
        factors: the factors, one column each; a method without a factor shows "–".
    """
    shown = Metric(metric, spec=".4g", std_spec=".2g")
    header = ["method"] + [f"1/{f}" if f > 1 else "full" for f in factors]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, by_factor in _resolution_statistics(rows, metric).items():
        cells = [method] + [by_factor.get(f, Statistic.of([])).format(shown) for f in factors]
        lines.append("| " + " | ".join(cells) + " |")
    return f"{metric} by B-scan subsampling factor\n\n" + "\n".join(lines) + "\n"


SUMMARY_COLUMNS: dict[str, tuple[str, ...]] = {
    "": ("bscans", "dice_mean", "assd_mean", "hd95_mean", "ssim", "pct_nonpositive_jacobian", "time_s"),
    "reference": ("bscans", "dice_mean", "assd_um", "ssim", "pct_negative_jacobian", "time_s"),
}
"""The columns of each protocol's printed summary (the files hold every column)."""


def write_tables(rows: EvaluationRows, out_dir: Path, factors: Sequence[int], figures: bool) -> None:
    """Both protocols' tables (per-eye CSVs, summary CSV + Markdown, resolution table), the thickness-error
    tables, the plot, and both summaries printed."""
    titles = {
        "": "Our protocol: every B-scan of the dense eye, 3-D metrics (ASSD/HD95 in mm)",
        "reference": "The paper's protocol: 2-D metrics per B-scan on the B-scans fitted, in blocks (ASSD in µm)",
    }
    for protocol, protocol_rows in (("", rows.ours), ("reference", rows.reference)):
        summary = summarise(protocol_rows)
        write_result_tables(out_dir, summary, protocol=protocol, overwrite=True)
        table = resolution_table([r for r in protocol_rows if r["method"] in ("ginr", "atlas")], "dice_mean", factors)
        suffix = f"_{protocol}" if protocol else ""
        atomic_write_text(out_dir / f"resolution{suffix}.md", table + "\n")
        print(f"\n{titles[protocol]} ({out_dir / table_names(protocol).summary_md}):\n")
        print(summary.table_markdown(SUMMARY_COLUMNS[protocol]))
    if rows.thickness:
        thickness = Summary.from_rows(rows.thickness, THICKNESS_KEYS, ERROR_METRICS, headings={"group": "Layers"})
        write_result_tables(out_dir, thickness, protocol=ERROR_PROTOCOL, per_eye=False, overwrite=True)
    if figures:
        ginr_rows = [row for row in rows.ours if row["method"] == "ginr"]
        plot_resolution(resolution_summary(ginr_rows, "dice_mean"), out_dir / "resolution.png", overwrite=True)


def write_atlas_volumes(
    atlas: AtlasINR,
    shape: Sequence[int],
    extent_mm: Sequence[float],
    out_dir: Path,
    chunk: int,
    class_names: Sequence[str] | None = None,
    figure: bool = True,
) -> list[Path]:
    """The atlas INR rendered on a regular ``shape`` grid over the fixed extent, as NIfTI (+ a figure), with
    the ITK-SNAP / Slicer label tables of ``class_names`` beside the labels."""
    prediction = predict_on_grid(atlas, grid_coordinates(regular_axes(shape)), None, chunk)
    spacing = tuple(e / max(n - 1, 1) for e, n in zip(extent_mm, shape))
    meta = {"atlas": "INR", "extent_mm": list(extent_mm)}
    written = [
        write_nifti(out_dir / ATLAS_INTENSITY_FILE, prediction.intensity, spacing, meta=meta, overwrite=True),
        write_nifti(out_dir / ATLAS_LABELS_FILE, prediction.labels, spacing, meta=meta, overwrite=True),
    ]
    if class_names:
        written += write_label_tables(out_dir, list(class_names))
    if figure:
        written.append(
            plot_atlas_slices(
                prediction.intensity,
                prediction.labels,
                spacing,
                out_dir / "atlas.png",
                class_names=class_names,
                overwrite=True,
            )
        )
    return written


def eye_in_atlas_space(
    displacement_fn: DisplacementFn,
    eye: Eye,
    atlas_shape: Sequence[int],
    extent_mm: Sequence[float],
    chunk: int,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """The eye's intensities and labels warped onto the atlas grid by the inverse of an INR registration's
    displacement ``displacement_fn`` (normalised coordinates).

    Returns ``(intensity [h, w, d] float32, labels [h, w, d] uint8)`` on the regular atlas grid.
    """
    labels = eye.required_labels("the eye's labels in atlas space")
    coords = grid_coordinates(regular_axes(atlas_shape))
    source = coords + inverse_displacement(displacement_fn, coords, chunk=chunk, device=device)
    axes = eye_axes(eye, extent_mm)
    return sample_volume(eye.oct, source, axes), sample_volume(labels, source, axes, nearest=True)


def write_eye_outputs(
    registration: EyeRegistration,
    eye: Eye,
    out_dir: Path,
    flip_os: bool,
    atlas_shape: Sequence[int],
    extent_mm: Sequence[float],
    chunk: int,
    before_labels: np.ndarray,
    device: torch.device,
    figures: bool = True,
    class_names: Sequence[str] | None = None,
) -> list[Path]:
    """Per-eye volumes of a registration (in the eye's own orientation) and its figures.

    Writes ``atlas_labels_in_eye``, ``atlas_in_eye``, ``displacement_mm`` (an ITK displacement
    field on the eye's grid, components in LPS mm: :mod:`retina_data.displacement_field`; ITK
    resampling of the atlas volume on the eye's grid with it gives ``atlas_in_eye``) and, for an INR
    registration, ``eye_in_atlas`` / ``eye_labels_in_atlas`` on the atlas grid (atlas orientation);
    with ``class_names`` the ITK-SNAP / Slicer label tables beside the label volumes.
    """

    def back(volume: np.ndarray) -> np.ndarray:
        return from_atlas_orientation(volume, eye.laterality, flip_os)

    displacement = from_atlas_orientation(registration.displacement_mm, eye.laterality, flip_os, axis=2)
    if flip_os and eye.laterality == "OS":  # mirrored along W: the W component changes sign
        displacement = displacement * np.array([1.0, -1.0, 1.0], dtype=np.float32)[:, None, None, None]
    written = [
        write_nifti(
            out_dir / "atlas_labels_in_eye.nii.gz",
            back(registration.labels),
            eye.spacing,
            eye.bscan_positions,
            overwrite=True,
        ),
        write_nifti(
            out_dir / "atlas_in_eye.nii.gz",
            back(registration.intensity),
            eye.spacing,
            eye.bscan_positions,
            overwrite=True,
        ),
        write_displacement_field(
            out_dir / "displacement_mm.nii.gz", displacement, eye.spacing, eye.bscan_positions, overwrite=True
        ),
    ]
    if class_names:
        written += write_label_tables(out_dir, list(class_names))
    if registration.displacement_fn is not None:
        intensity, labels = eye_in_atlas_space(registration.displacement_fn, eye, atlas_shape, extent_mm, chunk, device)
        spacing = tuple(e / max(n - 1, 1) for e, n in zip(extent_mm, atlas_shape))
        written += [
            write_nifti(out_dir / "eye_in_atlas.nii.gz", intensity, spacing, overwrite=True),
            write_nifti(out_dir / "eye_labels_in_atlas.nii.gz", labels, spacing, overwrite=True),
        ]
    if figures:
        written.append(
            plot_registration(
                eye.oct,
                eye.required_labels("the registration figure"),
                registration.labels,
                before_labels,
                out_dir / "registration.png",
                spacing=eye.spacing,
                overwrite=True,
            )
        )
        det = jacobian_determinant(registration.displacement_mm, eye.spacing)
        written.append(plot_jacobian(det, out_dir / "jacobian.png", spacing=eye.spacing, overwrite=True))
    return written
