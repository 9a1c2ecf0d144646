"""Figures of an interpolation evaluation: one page per eye.

The page shows, from top to bottom:

1. the SLO (or, without one, the mean-intensity en-face projection) with every input
   B-scan position as a thin line and the shown gap B-scan highlighted, next to the input
   B-scans nearest to that gap;
2. the gap B-scan: ground truth, then each method's prediction;
3. the labels of that B-scan overlaid on it (when the truth has labels);
4. the absolute intensity error of each method, on one shared colour scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from matplotlib.patches import Patch

from retina_data import metrics
from retina_data.eye import Eye
from retina_data.files import atomic_save
from retina_data.labels import label_names

if TYPE_CHECKING:
    from anisotropic_interpolation.evaluation import MethodPrediction

PANEL_WIDTH_IN = 2.6
LABEL_ALPHA = 0.45
INPUT_LINE_COLOUR = "#35c0ff"
GAP_LINE_COLOUR = "#ff3b30"


def choose_gap_bscan(positions: np.ndarray, input_mask: np.ndarray) -> int:
    """The gap B-scan to show: the one farthest from every input B-scan.

    Gaps between two input B-scans are preferred to those beyond the first or last input
    (which every method only extrapolates); among equally far gaps the one nearest the
    middle of the scan wins. Without gaps (or inputs), the middle B-scan.

    Args:
        positions: B-scan positions ``[D]`` in mm.
        input_mask: ``[D]`` bool, the acquired B-scans.
    """
    inputs = np.flatnonzero(input_mask)
    gaps = np.flatnonzero(~input_mask)
    if gaps.size == 0 or inputs.size == 0:
        return positions.size // 2
    inside = gaps[(positions[gaps] > positions[inputs[0]]) & (positions[gaps] < positions[inputs[-1]])]
    candidates = inside if inside.size else gaps
    distance = np.abs(positions[candidates, None] - positions[None, inputs]).min(axis=1)
    off_centre = np.abs(positions[candidates] - 0.5 * (positions[0] + positions[-1]))
    return int(candidates[np.lexsort((off_centre, -distance))[0]])


def label_colours(num_classes: int) -> ListedColormap:
    """Distinct colours for labels ``0 .. num_classes - 1`` (tab20 order)."""
    return ListedColormap(colormaps["tab20"](np.arange(num_classes) % 20))


def _image(ax: Axes, bscan: np.ndarray, title: str) -> None:
    ax.imshow(bscan, cmap="gray", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay(ax: Axes, bscan: np.ndarray, labels: np.ndarray | None, colours: ListedColormap, title: str) -> None:
    _image(ax, bscan, title)
    if labels is None:
        ax.text(0.5, 0.5, "no labels", transform=ax.transAxes, ha="center", va="center", color="white")
        return
    shown = np.ma.masked_equal(labels, 0)
    ax.imshow(
        shown, cmap=colours, vmin=-0.5, vmax=colours.N - 0.5, alpha=LABEL_ALPHA, aspect="auto", interpolation="nearest"
    )


def _enface(ax: Axes, eye: Eye, input_mask: np.ndarray, shown: int) -> None:
    """SLO (or OCT projection) ``[W, D]`` with slow axis vertical, in mm, and B-scan lines."""
    width_mm = eye.shape[1] * eye.spacing[1]
    if eye.slo is not None and eye.slo_positions is not None:
        image, rows, title = eye.slo, eye.slo_positions, "SLO"
    else:
        image, rows, title = eye.oct.mean(axis=0), eye.bscan_positions, "en-face projection"
    half = 0.5 * (rows[1] - rows[0]) if rows.size > 1 else 0.5 * eye.spacing[2]
    ax.imshow(
        image.T,
        cmap="gray",
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        extent=(0.0, width_mm, rows[0] - half, rows[-1] + half),
    )
    for position in eye.bscan_positions[input_mask]:
        ax.axhline(position, color=INPUT_LINE_COLOUR, linewidth=0.6, alpha=0.8)
    ax.axhline(eye.bscan_positions[shown], color=GAP_LINE_COLOUR, linewidth=1.6, linestyle="--")
    ax.set_title(f"{title}\ninputs (blue), shown B-scan (red)", fontsize=9)
    ax.set_xlabel("x (mm)", fontsize=8)
    ax.set_ylabel("slow axis (mm)", fontsize=8)
    ax.tick_params(labelsize=7)


def _inputs_row(figure: Figure, cells: list[SubplotSpec], truth: Eye, input_mask: np.ndarray, shown: int) -> None:
    """The en-face image with B-scan lines, then the input B-scans nearest to the shown one."""
    _enface(figure.add_subplot(cells[0]), truth, input_mask, shown)
    inputs = np.flatnonzero(input_mask)
    distance = np.abs(truth.bscan_positions[inputs] - truth.bscan_positions[shown])
    nearest = np.sort(inputs[np.argsort(distance, kind="stable")[: len(cells) - 1]])
    for cell, index in zip(cells[1:], nearest):
        _image(
            figure.add_subplot(cell),
            truth.oct[:, :, index],
            f"input B-scan {index} ({truth.bscan_positions[index]:.3f} mm)",
        )


def _intensity_row(
    figure: Figure, cells: list[SubplotSpec], truth_bscan: np.ndarray, predicted: dict[str, np.ndarray]
) -> None:
    """The true B-scan, then each method's prediction of it with its PSNR."""
    _image(figure.add_subplot(cells[0]), truth_bscan, "ground truth")
    for cell, (method, bscan) in zip(cells[1:], predicted.items()):
        _image(figure.add_subplot(cell), bscan, f"{method}: PSNR {metrics.psnr(bscan, truth_bscan):.2f} dB")


def _labels_row(
    figure: Figure,
    cells: list[SubplotSpec],
    truth_bscan: np.ndarray,
    truth_labels: np.ndarray,
    predicted: dict[str, np.ndarray],
    predicted_labels: dict[str, np.ndarray | None],
    colours: ListedColormap,
) -> None:
    """Label overlays: the truth, then each method with its mean Dice on this B-scan."""
    _overlay(figure.add_subplot(cells[0]), truth_bscan, truth_labels, colours, "true labels")
    for cell, (method, labels) in zip(cells[1:], predicted_labels.items()):
        title = (
            method if labels is None else (f"{method}: Dice {metrics.mean_dice(labels, truth_labels, colours.N):.3f}")
        )
        _overlay(figure.add_subplot(cell), predicted[method], labels, colours, title)


def _error_row(
    figure: Figure,
    cells: list[SubplotSpec],
    truth_bscan: np.ndarray,
    predicted: dict[str, np.ndarray],
    colours: ListedColormap | None,
) -> None:
    """The label legend (when there are labels), then each method's absolute error on one scale."""
    legend = figure.add_subplot(cells[0])
    legend.axis("off")
    if colours is not None:
        names = label_names(with_fluid=True)
        legend.legend(
            handles=[
                Patch(color=colours(k), label=f"{k} {names[k] if k < len(names) else ''}") for k in range(1, colours.N)
            ],
            loc="center",
            ncols=2,
            fontsize=7,
            title="labels",
            title_fontsize=8,
            frameon=False,
        )
    if not predicted:
        return
    errors = {method: np.abs(bscan - truth_bscan) for method, bscan in predicted.items()}
    top = max(float(np.percentile(np.stack(list(errors.values())), 99.5)), 1e-6)
    axes = []
    for cell, (method, error) in zip(cells[1:], errors.items()):
        ax = figure.add_subplot(cell)
        image = ax.imshow(error, cmap="magma", vmin=0.0, vmax=top, aspect="auto", interpolation="nearest")
        ax.set_title(f"{method}: |error|, MAE {error.mean():.4f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        axes.append(ax)
    bar = figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
    bar.set_label("|prediction − truth|", fontsize=8)
    bar.ax.tick_params(labelsize=7)


def eye_figure(
    truth: Eye,
    input_mask: np.ndarray,
    predictions: dict[str, MethodPrediction],
    path: str | Path,
    *,
    bscan: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Draw the evaluation page of one eye and save it (PNG, atomically) to ``path``.

    Args:
        truth: dense ground-truth eye ``[H, W, D]``.
        input_mask: ``[D]`` bool, the B-scans the methods were given.
        predictions: method name -> dense prediction ``[H, W, D]``.
        path: output file.
        bscan: index of the B-scan to show; see :func:`choose_gap_bscan` if ``None``.
        overwrite: replace an existing file.
    """
    shown = choose_gap_bscan(truth.bscan_positions, input_mask) if bscan is None else int(bscan)
    truth_bscan = truth.oct[:, :, shown]
    predicted = {method: p.intensity[:, :, shown] for method, p in predictions.items()}
    predicted_labels = {
        method: None if p.labels is None else p.labels[:, :, shown] for method, p in predictions.items()
    }
    colours = None
    if truth.labels is not None:
        largest = [int(truth.labels.max())]
        largest += [int(p.labels.max()) for p in predictions.values() if p.labels is not None]
        colours = label_colours(max(largest) + 1)

    columns = max(3, 1 + len(predictions))
    height, width, _ = truth.shape
    panel_height = float(np.clip(PANEL_WIDTH_IN * height / width, 1.2, 3.2))
    rows = 3 + int(colours is not None)
    heights = [max(panel_height, 2.0)] + [panel_height] * (rows - 1)
    figure = Figure(figsize=(PANEL_WIDTH_IN * columns, sum(heights) + 0.9), layout="constrained")
    grid = figure.add_gridspec(rows, columns, height_ratios=heights)
    cells = [[grid[row, column] for column in range(columns)] for row in range(rows)]
    where = "input" if input_mask[shown] else "gap"
    figure.suptitle(
        f"{truth.eye_id}: {where} B-scan {shown} at {truth.bscan_positions[shown]:.3f} mm "
        f"({int(input_mask.sum())} of {input_mask.size} B-scans given)",
        fontsize=11,
    )

    _inputs_row(figure, cells[0], truth, input_mask, shown)
    _intensity_row(figure, cells[1], truth_bscan, predicted)
    if colours is not None and truth.labels is not None:
        _labels_row(figure, cells[2], truth_bscan, truth.labels[:, :, shown], predicted, predicted_labels, colours)
    _error_row(figure, cells[-1], truth_bscan, predicted, colours)
    return atomic_save(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"), overwrite=overwrite)
