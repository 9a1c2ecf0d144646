"""Overview figures of one eye: B-scan, labels, SLO and en-face projection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.files import atomic_save
from retina_data.labels import FLUID_LABEL, label_names

LABEL_COLOURS = (
    "#000000",  # 0 vitreous (not drawn)
    "#e6194b",  # 1 RNFL
    "#f58231",  # 2 GCL
    "#ffe119",  # 3 IPL
    "#bfef45",  # 4 INL
    "#3cb44b",  # 5 OPL
    "#42d4f4",  # 6 ONL
    "#4363d8",  # 7 IS
    "#911eb4",  # 8 EZ
    "#f032e6",  # 9 OS
    "#fabed4",  # 10 IZ
    "#9a6324",  # 11 RPE
    "#808000",  # 12 choroid
    "#00ffcc",  # 13 fluid
)
"""One colour per label value."""


def _bscan_extent(eye: Eye) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` of a B-scan in mm (A-scan position, depth)."""
    height, width, _ = eye.shape
    return (0.0, width * eye.spacing[1], height * eye.spacing[0], 0.0)


def _enface_extent(eye: Eye, positions: np.ndarray) -> tuple[float, float, float, float]:
    """``(left, right, bottom, top)`` of an en-face image whose columns lie at ``positions`` (mm)."""
    step = float(np.median(np.diff(positions))) if positions.size > 1 else eye.spacing[2]
    return (0.0, eye.shape[1] * eye.spacing[1], float(positions[-1]) + step / 2, float(positions[0]) - step / 2)


def plot_phantom_overview(
    eye: Eye, path: str | Path, *, bscan_index: int | None = None, overwrite: bool = False
) -> Path:
    """Write a PNG overview of ``eye``: a B-scan, its labels, the SLO and the en-face OCT.

    Panels without data (no labels, no SLO) are left out. The B-scan's position is marked
    on the en-face images.

    Args:
        eye: any eye (phantom or imported).
        path: the PNG to write (atomically).
        bscan_index: which B-scan to show; default the middle one.
        overwrite: replace an existing file.

    Returns:
        ``path``.
    """
    depth = eye.shape[2]
    index = depth // 2 if bscan_index is None else bscan_index
    if not 0 <= index < depth:
        raise DataError(f"eye {eye.eye_id}: B-scan index {index} out of range 0 .. {depth - 1}")
    position = float(eye.bscan_positions[index])
    bscan_panels = 2 if eye.has_labels else 1
    enface_panels = 2 if eye.has_slo else 1
    columns = max(bscan_panels, enface_panels)
    fig = Figure(figsize=(6.5 * columns, 9.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, columns, height_ratios=(1.0, 1.25))
    fig.suptitle(
        f"{eye.eye_id}: OCT {eye.shape[0]} x {eye.shape[1]} x {eye.shape[2]} (H x W x D), "
        f"spacing {eye.spacing[0] * 1e3:.2f} x {eye.spacing[1] * 1e3:.1f} x {eye.spacing[2] * 1e3:.1f} µm"
    )

    bscan = eye.oct[:, :, index]
    extent = _bscan_extent(eye)
    axes = fig.add_subplot(grid[0, 0])
    axes.imshow(bscan, cmap="gray", extent=extent, aspect="auto", interpolation="nearest")
    axes.set(title=f"B-scan {index} at {position:.2f} mm", xlabel="along the B-scan (mm)", ylabel="depth (mm)")
    if eye.labels is not None:
        _plot_labels(fig.add_subplot(grid[0, 1]), bscan, eye.labels[:, :, index], extent)

    enface = eye.oct.mean(axis=0).T
    axes = fig.add_subplot(grid[1, enface_panels - 1])
    axes.imshow(
        enface, cmap="gray", extent=_enface_extent(eye, eye.bscan_positions), aspect="equal", interpolation="nearest"
    )
    _mark_position(axes, position)
    axes.set(title="en-face OCT (mean over depth)", xlabel="along the B-scan (mm)", ylabel="slow axis (mm)")
    if eye.slo is not None and eye.slo_positions is not None:
        axes = fig.add_subplot(grid[1, 0])
        axes.imshow(
            eye.slo.T,
            cmap="gray",
            extent=_enface_extent(eye, eye.slo_positions),
            aspect="equal",
            interpolation="nearest",
        )
        _mark_position(axes, position)
        axes.set(title="SLO (dashed: B-scan position)", xlabel="along the B-scan (mm)", ylabel="slow axis (mm)")
    return atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110), overwrite=overwrite)


def _mark_position(axes: Axes, position: float) -> None:
    """A dashed red line across an en-face image at the slow-axis ``position`` (mm) of the B-scan shown."""
    axes.axhline(position, color="#ff3030", linewidth=1.0, linestyle="--")


def _plot_labels(axes: Axes, bscan: np.ndarray, labels: np.ndarray, extent: tuple[float, float, float, float]) -> None:
    """The B-scan with its labels over it and a legend of the classes it shows."""
    names = label_names(with_fluid=True)
    colours = ListedColormap(LABEL_COLOURS)
    norm = BoundaryNorm(np.arange(len(LABEL_COLOURS) + 1) - 0.5, len(LABEL_COLOURS))
    axes.imshow(bscan, cmap="gray", extent=extent, aspect="auto", interpolation="nearest")
    axes.imshow(
        np.ma.masked_equal(labels, 0),
        cmap=colours,
        norm=norm,
        alpha=0.45,
        extent=extent,
        aspect="auto",
        interpolation="nearest",
    )
    present = [int(v) for v in np.unique(labels) if 0 < v <= FLUID_LABEL]
    axes.legend(
        handles=[Patch(color=LABEL_COLOURS[v], label=names[v]) for v in present],
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize=8,
        frameon=False,
    )
    axes.set(title="labels", xlabel="along the B-scan (mm)", yticks=[])
