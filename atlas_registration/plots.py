"""Figures of the atlas experiments: atlas slices, registrations, Jacobians, resolution.

Every figure is drawn on a standalone matplotlib ``Figure`` (Agg canvas, no pyplot state,
so it works without a display and from worker processes) and written atomically; an
existing file is replaced only with ``overwrite=True``.

Volumes are ``[H, W, D]``; B-scans are shown as ``[H, W]`` (depth down), en-face images
as ``[W, D]`` with the B-scan index to the right, both with axes in mm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from retina_data.files import atomic_save

_LABEL_COLOURS = ListedColormap(
    [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#bcbd22",
        "#17becf",
        "#aec7e8",
        "#ffbb78",
        "#98df8a",
        "#ff9896",
        "#c5b0d5",
    ],
    name="layers",
)
"""One colour per label 1..14 (label 0, the vitreous, stays transparent)."""

_TRUTH_COLOUR, _PREDICTION_COLOUR = "#39ff14", "#ff2fd0"


def _save(figure: Figure, path: str | Path, overwrite: bool, dpi: int = 120) -> Path:
    FigureCanvasAgg(figure)
    return atomic_save(path, lambda tmp: figure.savefig(tmp, dpi=dpi, bbox_inches="tight"), overwrite=overwrite)


def _extent(rows: int, cols: int, row_mm: float, col_mm: float) -> tuple[float, float, float, float]:
    """``imshow`` extent in mm for a ``[rows, cols]`` image with rows increasing downwards."""
    return (-0.5 * col_mm, (cols - 0.5) * col_mm, (rows - 0.5) * row_mm, -0.5 * row_mm)


def _overlay(ax, labels: np.ndarray, extent: tuple[float, float, float, float], alpha: float = 0.35) -> None:
    shown = np.ma.masked_equal(labels.astype(np.int16), 0)
    ax.imshow(
        shown,
        cmap=_LABEL_COLOURS,
        vmin=0.5,
        vmax=_LABEL_COLOURS.N + 0.5,
        alpha=alpha,
        extent=extent,
        aspect="auto",
        interpolation="nearest",
    )


def _enface_row(labels: np.ndarray) -> int:
    """Depth row through the middle of the retina: median row of labels other than the
    vitreous (0) and the deepest class (choroid)."""
    deepest = int(labels.max())
    rows = np.nonzero((labels > 0) & (labels < deepest))[0]
    return int(np.median(rows)) if rows.size else labels.shape[0] // 2


def plot_atlas_slices(
    intensity: np.ndarray,
    labels: np.ndarray,
    spacing: Sequence[float],
    path: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    bscan: int | None = None,
    enface_row: int | None = None,
    overwrite: bool = False,
) -> Path:
    """A B-scan, an en-face slice and a slow-axis cross-section of the atlas, labels overlaid.

    Args:
        intensity: atlas intensity ``[H, W, D]``.
        labels: atlas labels ``[H, W, D]``.
        spacing: ``(dH, dW, dD)`` mm.
        path: PNG to write.
        class_names: names of labels 0..K-1 for the legend (label numbers otherwise).
        bscan: B-scan index shown (default the middle one); also marks the en-face slice.
        enface_row: depth row of the en-face slice (default the middle of the retina).
        overwrite: replace an existing file.
    """
    height, width, depth = intensity.shape
    d_h, d_w, d_d = (float(s) for s in spacing)
    bscan = depth // 2 if bscan is None else bscan
    enface_row = _enface_row(labels) if enface_row is None else enface_row
    column = width // 2
    figure = Figure(figsize=(15, 4.6))
    axes = figure.subplots(1, 3)
    panels = [
        (
            intensity[:, :, bscan],
            labels[:, :, bscan],
            (height, width, d_h, d_w),
            f"B-scan {bscan}",
            "W (mm)",
            "depth (mm)",
        ),
        (
            intensity[enface_row],
            labels[enface_row],
            (width, depth, d_w, d_d),
            f"en-face, depth row {enface_row}",
            "B-scan position (mm)",
            "W (mm)",
        ),
        (
            intensity[:, column],
            labels[:, column],
            (height, depth, d_h, d_d),
            f"cross-section at W = {column}",
            "B-scan position (mm)",
            "depth (mm)",
        ),
    ]
    for ax, (image, label_image, grid, title, xlabel, ylabel) in zip(axes, panels):
        extent = _extent(*grid)
        ax.imshow(image, cmap="gray", extent=extent, aspect="auto", interpolation="nearest")
        _overlay(ax, label_image, extent)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes[1].axvline(bscan * d_d, color="w", lw=0.8, ls="--")
    axes[2].axhline(enface_row * d_h, color="w", lw=0.8, ls="--")
    present = [int(k) for k in np.unique(labels) if k > 0]
    names = [class_names[k] if class_names is not None and k < len(class_names) else f"label {k}" for k in present]
    handles = [Patch(color=_LABEL_COLOURS((k - 1) % _LABEL_COLOURS.N), label=n) for k, n in zip(present, names)]
    figure.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    figure.subplots_adjust(right=0.88, wspace=0.3)
    figure.suptitle("atlas: median intensity and median labels")
    return _save(figure, path, overwrite)


def _contours(ax, labels: np.ndarray, row_mm: float, col_mm: float, colour: str, style: str) -> None:
    """Boundaries between consecutive label values of ``labels [rows, cols]`` as lines."""
    levels = np.arange(int(labels.min()), int(labels.max())) + 0.5
    if levels.size == 0:
        return
    rows, cols = labels.shape
    ax.contour(
        np.arange(cols) * col_mm,
        np.arange(rows) * row_mm,
        labels.astype(np.float32),
        levels=levels,
        colors=colour,
        linewidths=0.8,
        linestyles=style,
    )


def plot_registration(
    eye_intensity: np.ndarray,
    eye_labels: np.ndarray,
    warped_atlas_labels: np.ndarray,
    before_labels: np.ndarray,
    path: str | Path,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    bscan: int | None = None,
    overwrite: bool = False,
) -> Path:
    """One eye B-scan with the eye's layer boundaries and the atlas's, before and after.

    Args:
        eye_intensity: the eye ``[H, W, D]``.
        eye_labels: its true labels ``[H, W, D]`` (green solid lines).
        warped_atlas_labels: atlas labels after registration ``[H, W, D]`` (magenta dashes).
        before_labels: atlas labels before registration ``[H, W, D]`` (magenta dashes).
        path: PNG to write.
        spacing: ``(dH, dW, dD)`` mm, for the axes.
        bscan: B-scan index shown (default the middle one).
        overwrite: replace an existing file.
    """
    height, width, depth = eye_intensity.shape
    bscan = depth // 2 if bscan is None else bscan
    d_h, d_w = float(spacing[0]), float(spacing[1])
    extent = _extent(height, width, d_h, d_w)
    figure = Figure(figsize=(12, 4.6))
    axes = figure.subplots(1, 2, sharey=True)
    for ax, atlas_labels, title in zip(
        axes, (before_labels, warped_atlas_labels), ("before registration", "after registration")
    ):
        ax.imshow(eye_intensity[:, :, bscan], cmap="gray", extent=extent, aspect="auto", interpolation="nearest")
        _contours(ax, eye_labels[:, :, bscan], d_h, d_w, _TRUTH_COLOUR, "solid")
        _contours(ax, atlas_labels[:, :, bscan], d_h, d_w, _PREDICTION_COLOUR, "dashed")
        ax.set(title=f"{title} (B-scan {bscan})", xlabel="W (mm)")
    axes[0].set_ylabel("depth (mm)")
    figure.legend(
        handles=[Patch(color=_TRUTH_COLOUR, label="eye labels"), Patch(color=_PREDICTION_COLOUR, label="atlas labels")],
        loc="lower center",
        ncol=2,
        frameon=False,
    )
    figure.subplots_adjust(bottom=0.18)
    return _save(figure, path, overwrite)


def plot_jacobian(
    det: np.ndarray,
    path: str | Path,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    bscan: int | None = None,
    overwrite: bool = False,
) -> Path:
    """The Jacobian determinant on a B-scan and its en-face minimum, folds highlighted.

    Colours are centred at 1 (volume kept); voxels with ``det <= 0`` are painted solid
    yellow. The default B-scan is the one with the most non-positive voxels.

    Args:
        det: determinant ``[H, W, D]``.
        path: PNG to write.
        spacing: ``(dH, dW, dD)`` mm, for the axes.
        bscan: B-scan index shown.
        overwrite: replace an existing file.
    """
    height, width, depth = det.shape
    folds = det <= 0
    if bscan is None:
        per_bscan = folds.sum(axis=(0, 1))
        bscan = int(per_bscan.argmax()) if per_bscan.any() else depth // 2
    d_h, d_w, d_d = (float(s) for s in spacing)
    low, high = min(float(det.min()), 0.999), max(float(det.max()), 1.001)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=low, vmax=high)
    figure = Figure(figsize=(12, 4.6))
    axes = figure.subplots(1, 2)
    panels = [
        (
            det[:, :, bscan],
            folds[:, :, bscan],
            _extent(height, width, d_h, d_w),
            f"B-scan {bscan}",
            "W (mm)",
            "depth (mm)",
        ),
        (
            det.min(axis=0),
            folds.any(axis=0),
            _extent(width, depth, d_w, d_d),
            "en-face minimum over depth",
            "B-scan position (mm)",
            "W (mm)",
        ),
    ]
    for ax, (image, mask, extent, title, xlabel, ylabel) in zip(axes, panels):
        shown = ax.imshow(image, cmap="coolwarm", norm=norm, extent=extent, aspect="auto", interpolation="nearest")
        ax.imshow(
            np.ma.masked_where(~mask, mask.astype(np.float32)),
            cmap=ListedColormap(["yellow"]),
            extent=extent,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        figure.colorbar(shown, ax=ax, label="det J")
    figure.suptitle(f"Jacobian determinant: {100.0 * folds.mean():.3g}% of voxels <= 0 (yellow)")
    return _save(figure, path, overwrite)


def plot_resolution(
    results: Mapping[str, Mapping[int, tuple[float, float]]],
    path: str | Path,
    *,
    metric_label: str = "mean Dice",
    overwrite: bool = False,
) -> Path:
    """A metric (mean ± std over eyes) against the B-scan subsampling factor, one line per method.

    Args:
        results: ``{method: {factor: (mean, std)}}``, e.g. from
            :func:`atlas_registration.reporting.resolution_summary`.
        path: PNG to write.
        metric_label: y-axis label.
        overwrite: replace an existing file.
    """
    figure = Figure(figsize=(6, 4.2))
    ax = figure.subplots()
    factors = sorted({int(f) for by_factor in results.values() for f in by_factor})
    for method, by_factor in results.items():
        xs = sorted(by_factor)
        means = np.array([by_factor[f][0] for f in xs], dtype=np.float64)
        stds = np.nan_to_num(np.array([by_factor[f][1] for f in xs], dtype=np.float64))
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=method)
    ax.set_xscale("log", base=2)
    ax.set_xticks(factors, [str(f) for f in factors])
    ax.minorticks_off()
    ax.set(
        xlabel="B-scan subsampling factor (every k-th B-scan)",
        ylabel=metric_label,
        title=f"{metric_label} vs B-scan spacing",
    )
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return _save(figure, path, overwrite)
