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
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
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
    from matplotlib import colormaps

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
    ax.imshow(shown, cmap=colours, vmin=-0.5, vmax=colours.N - 0.5, alpha=LABEL_ALPHA, aspect="auto",
              interpolation="nearest")


def _enface(ax: Axes, eye: Eye, input_mask: np.ndarray, shown: int) -> None:
    """SLO (or OCT projection) ``[W, D]`` with slow axis vertical, in mm, and B-scan lines."""
    width_mm = eye.shape[1] * eye.spacing[1]
    if eye.slo is not None:
        image, rows, title = eye.slo, eye.slo_positions, "SLO"
    else:
        image, rows, title = eye.oct.mean(axis=0), eye.bscan_positions, "en-face projection"
    half = 0.5 * (rows[1] - rows[0]) if rows.size > 1 else 0.5 * eye.spacing[2]
    ax.imshow(image.T, cmap="gray", aspect="auto", origin="lower", interpolation="nearest",
              extent=(0.0, width_mm, rows[0] - half, rows[-1] + half))
    for position in eye.bscan_positions[input_mask]:
        ax.axhline(position, color=INPUT_LINE_COLOUR, linewidth=0.6, alpha=0.8)
    ax.axhline(eye.bscan_positions[shown], color=GAP_LINE_COLOUR, linewidth=1.6, linestyle="--")
    ax.set_title(f"{title}\ninputs (blue), shown B-scan (red)", fontsize=9)
    ax.set_xlabel("x (mm)", fontsize=8)
    ax.set_ylabel("slow axis (mm)", fontsize=8)
    ax.tick_params(labelsize=7)


def eye_figure(truth: Eye, input_mask: np.ndarray, predictions: dict[str, MethodPrediction], path: str | Path,
               *, bscan: int | None = None, overwrite: bool = False) -> Path:
    """Draw the evaluation page of one eye and save it (PNG, atomically) to ``path``.

    Args:
        truth: dense ground-truth eye ``[H, W, D]``.
        input_mask: ``[D]`` bool, the B-scans the methods were given.
        predictions: method name -> dense prediction ``[H, W, D]``.
        path: output file.
        bscan: index of the B-scan to show; the gap B-scan farthest from the inputs if ``None``.
        overwrite: replace an existing file.
    """
    shown = choose_gap_bscan(truth.bscan_positions, input_mask) if bscan is None else int(bscan)
    methods = list(predictions)
    columns = max(3, 1 + len(methods))
    height, width, _ = truth.shape
    panel_height = float(np.clip(PANEL_WIDTH_IN * height / width, 1.2, 3.2))
    has_labels = truth.labels is not None
    rows = ["inputs", "intensity", *(["labels"] if has_labels else []), "error"]
    heights = [max(panel_height, 2.0 if truth.slo is not None else panel_height)] + [panel_height] * (len(rows) - 1)
    figure = Figure(figsize=(PANEL_WIDTH_IN * columns, sum(heights) + 0.9), layout="constrained")
    grid = figure.add_gridspec(len(rows), columns, height_ratios=heights)
    position = truth.bscan_positions[shown]
    where = "gap" if not input_mask[shown] else "input"
    figure.suptitle(f"{truth.eye_id}: {where} B-scan {shown} at {position:.3f} mm "
                    f"({int(input_mask.sum())} of {input_mask.size} B-scans given)", fontsize=11)

    _enface(figure.add_subplot(grid[0, 0]), truth, input_mask, shown)
    inputs = np.flatnonzero(input_mask)
    nearest = inputs[np.argsort(np.abs(truth.bscan_positions[inputs] - position), kind="stable")[:columns - 1]]
    for column, index in enumerate(np.sort(nearest), start=1):
        _image(figure.add_subplot(grid[0, column]), truth.oct[:, :, index],
               f"input B-scan {index} ({truth.bscan_positions[index]:.3f} mm)")

    truth_bscan = truth.oct[:, :, shown]
    row = rows.index("intensity")
    _image(figure.add_subplot(grid[row, 0]), truth_bscan, "ground truth")
    for column, method in enumerate(methods, start=1):
        predicted = predictions[method].intensity[:, :, shown]
        _image(figure.add_subplot(grid[row, column]), predicted,
               f"{method}: PSNR {metrics.psnr(predicted, truth_bscan):.2f} dB")

    if has_labels:
        row = rows.index("labels")
        truth_labels = truth.labels[:, :, shown]
        colours = label_colours(max(int(truth.labels.max()), *(
            int(p.labels.max()) for p in predictions.values() if p.labels is not None)) + 1)
        _overlay(figure.add_subplot(grid[row, 0]), truth_bscan, truth_labels, colours, "true labels")
        for column, method in enumerate(methods, start=1):
            labels = predictions[method].labels
            shown_labels = None if labels is None else labels[:, :, shown]
            title = method if shown_labels is None else (
                f"{method}: Dice {metrics.mean_dice(shown_labels, truth_labels, colours.N):.3f}")
            _overlay(figure.add_subplot(grid[row, column]), predictions[method].intensity[:, :, shown],
                     shown_labels, colours, title)

    row = rows.index("error")
    errors = {method: np.abs(predictions[method].intensity[:, :, shown] - truth_bscan) for method in methods}
    top = max(float(np.percentile(np.stack(list(errors.values())), 99.5)), 1e-6) if errors else 1.0
    legend = figure.add_subplot(grid[row, 0])
    legend.axis("off")
    if has_labels:
        names = label_names(with_fluid=True)
        legend.legend(handles=[Patch(color=colours(k), label=f"{k} {names[k] if k < len(names) else ''}")
                               for k in range(1, colours.N)],
                      loc="center", ncols=2, fontsize=7, title="labels", title_fontsize=8, frameon=False)
    error_axes = []
    for column, method in enumerate(methods, start=1):
        ax = figure.add_subplot(grid[row, column])
        image = ax.imshow(errors[method], cmap="magma", vmin=0.0, vmax=top, aspect="auto", interpolation="nearest")
        ax.set_title(f"{method}: |error|, MAE {errors[method].mean():.4f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        error_axes.append(ax)
    if error_axes:
        bar = figure.colorbar(image, ax=error_axes, fraction=0.03, pad=0.01)
        bar.set_label("|prediction − truth|", fontsize=8)
        bar.ax.tick_params(labelsize=7)

    return atomic_save(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"), overwrite=overwrite)
