"""Classical slow-axis interpolation baselines: nearest, linear and cubic.

Each baseline fills the gaps between the acquired B-scans of a sparse eye by interpolating
along the slow axis at the eye's true (possibly non-uniform) B-scan positions:

- intensities: nearest neighbour, a linear spline, or a not-a-knot cubic spline
  (``scipy.interpolate``), vectorised over all A-scan pixels;
- labels: the nearest B-scan's labels for ``nearest``; for ``linear`` and ``cubic`` the
  one-hot encoding of the labels is interpolated the same way and the most likely class
  is kept, ties going to the nearest B-scan (so linear reduces to the nearer B-scan's
  label; cubic weighs four neighbours).

Query positions outside the acquired range take the edge B-scan, and at the acquired
positions every baseline returns its input exactly. Work is done in blocks of A-scan rows
so a full-size volume stays within a bounded memory budget.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.interpolate import CubicSpline, make_interp_spline

from retina_data.errors import DataError
from retina_data.eye import Eye

from anisotropic_interpolation.evaluation import MethodPrediction

METHODS: tuple[str, ...] = ("nearest", "linear", "cubic")
POSITION_TOLERANCE_MM = 1e-6
"""Query positions this close to an acquired B-scan return that B-scan unchanged."""
MEMORY_BUDGET_BYTES = 256 * 2**20
TIE_BREAK = 1e-6
"""Weight of the nearest B-scan's one-hot added to interpolated label scores: a class tie
(e.g. midway between two B-scans) goes to the nearest B-scan, not to the lowest label."""


def nearest_index(grid: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Index ``[Q]`` of the closest ``grid`` value (sorted ``[N]``) to each position; ties go down."""
    upper = np.clip(np.searchsorted(grid, positions), 1, max(grid.size - 1, 1))
    lower = upper - 1
    if grid.size == 1:
        return np.zeros(positions.shape, dtype=np.int64)
    take_lower = (positions - grid[lower]) <= (grid[upper] - positions)
    return np.where(take_lower, lower, upper).astype(np.int64)


def _interpolator(method: str, grid: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``f(values [h, W, N, ...], positions [Q]) -> [h, W, Q, ...]`` along axis 2."""
    if grid.size == 1 or method == "nearest":
        return lambda values, positions: np.take(values, nearest_index(grid, positions), axis=2)
    if method == "linear":
        return lambda values, positions: make_interp_spline(grid, values, k=1, axis=2)(positions)
    if method == "cubic":
        return lambda values, positions: CubicSpline(grid, values, axis=2)(positions)
    raise DataError(f"unknown interpolation method {method!r}; expected one of {METHODS}")


def _by_row_blocks(volume: np.ndarray, bytes_per_row: int,
                   compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``compute`` to blocks of rows of ``volume`` ``[H, ...]`` and stack the results."""
    rows = max(1, MEMORY_BUDGET_BYTES // max(bytes_per_row, 1))
    return np.concatenate([compute(volume[start:start + rows]) for start in range(0, volume.shape[0], rows)])


def interpolate_slow_axis(sparse_eye: Eye, positions_mm: np.ndarray, method: str = "linear") -> MethodPrediction:
    """Interpolate a sparse eye's B-scans to new slow-axis positions.

    Args:
        sparse_eye: the acquired B-scans ``oct [H, W, N]`` (and ``labels``, if any) at
            ``bscan_positions [N]`` mm.
        positions_mm: query positions ``[Q]`` in mm along the slow axis.
        method: ``"nearest"``, ``"linear"`` or ``"cubic"``.

    Returns:
        Intensity ``[H, W, Q]`` float32 and, when the eye has labels, labels
        ``[H, W, Q]`` uint8.
    """
    if method not in METHODS:
        raise DataError(f"unknown interpolation method {method!r}; expected one of {METHODS}")
    grid = sparse_eye.bscan_positions
    positions = np.asarray(positions_mm, dtype=np.float64).reshape(-1)
    clamped = np.clip(positions, grid[0], grid[-1])
    interpolate = _interpolator(method, grid)
    _, width, count = sparse_eye.shape
    queries = positions.size

    intensity = _by_row_blocks(
        sparse_eye.oct, width * (6 * count + 2 * queries) * 8,
        lambda rows: interpolate(rows.astype(np.float64), clamped).astype(np.float32))
    labels = None
    if sparse_eye.labels is not None:
        num_classes = int(sparse_eye.labels.max()) + 1
        classes = np.arange(num_classes)

        nearest = _interpolator("nearest", grid)

        def interpolate_labels(rows: np.ndarray) -> np.ndarray:
            if method == "nearest" or count == 1:
                return nearest(rows, clamped)
            one_hot = (rows[..., None] == classes).astype(np.float64)  # [h, W, N, C]
            scores = interpolate(one_hot, clamped) + TIE_BREAK * nearest(one_hot, clamped)
            return np.argmax(scores, axis=-1).astype(np.uint8)

        labels = _by_row_blocks(sparse_eye.labels.astype(np.uint8),
                                width * num_classes * (6 * count + 2 * queries) * 8, interpolate_labels)

    source = nearest_index(grid, positions)
    acquired = np.abs(grid[source] - positions) <= POSITION_TOLERANCE_MM
    intensity[:, :, acquired] = sparse_eye.oct[:, :, source[acquired]]
    if labels is not None:
        labels[:, :, acquired] = sparse_eye.labels[:, :, source[acquired]]
    return MethodPrediction(intensity=intensity, labels=labels)


def classical_baselines(sparse_eye: Eye, positions_mm: np.ndarray) -> dict[str, MethodPrediction]:
    """``{"nearest": ..., "linear": ..., "cubic": ...}`` predictions at ``positions_mm [Q]``."""
    return {method: interpolate_slow_axis(sparse_eye, positions_mm, method) for method in METHODS}
