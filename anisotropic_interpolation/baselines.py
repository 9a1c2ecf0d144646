"""Classical slow-axis interpolation baselines: nearest, linear and cubic.

Each baseline fills the gaps between the acquired B-scans of a sparse eye by interpolating
along the slow axis at the eye's true (possibly non-uniform) B-scan positions:

- intensities: nearest neighbour, a linear spline, or a not-a-knot cubic spline;
- labels: the nearest B-scan's labels for ``nearest``; for ``linear`` and ``cubic`` the
  one-hot encoding of the labels is interpolated the same way and the most likely class
  is kept, ties going to the nearest B-scan (so linear gives the nearer B-scan's label at
  every voxel; cubic weighs four and more neighbours).

Every spline is linear in the data, so the interpolation is one matrix ``[Q, N]`` from the
``N`` acquired to the ``Q`` queried B-scans: ``scipy.interpolate`` builds it once by
interpolating the identity, and it is applied to all A-scan pixels (and classes) as a
matrix product, in blocks of rows within a bounded memory budget. Query positions outside
the acquired range take the edge B-scan; at the acquired positions the matrix row is a
unit vector, so every baseline returns its input exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.interpolate import CubicSpline, make_interp_spline

from anisotropic_interpolation.evaluation import MethodPrediction
from retina_data.errors import DataError
from retina_data.eye import Eye

METHODS: tuple[str, ...] = ("nearest", "linear", "cubic")
POSITION_TOLERANCE_MM = 1e-6
"""Query positions this close to an acquired B-scan return that B-scan unchanged."""
MEMORY_BUDGET_BYTES = 256 * 2**20
TIE_BREAK = 1e-4
"""Weight of the nearest B-scan's one-hot added to interpolated label scores: a class tie
(e.g. midway between two B-scans) goes to the nearest B-scan, not to the lowest label."""


def nearest_index(grid: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Index ``[Q]`` of the closest ``grid`` value (sorted ``[N]``) to each position; ties go down."""
    if grid.size == 1:
        return np.zeros(positions.shape, dtype=np.int64)
    upper = np.clip(np.searchsorted(grid, positions), 1, grid.size - 1)
    lower = upper - 1
    take_lower = (positions - grid[lower]) <= (grid[upper] - positions)
    return np.where(take_lower, lower, upper).astype(np.int64)


def interpolation_matrix(grid: np.ndarray, positions: np.ndarray, method: str) -> np.ndarray:
    """Weights ``[Q, N]`` that map values at ``grid [N]`` (mm) to values at ``positions [Q]``.

    Positions are clamped to the grid's range (edge values outside it); a position within
    :data:`POSITION_TOLERANCE_MM` of a grid point gets that point's unit row.
    """
    if method not in METHODS:
        raise DataError(f"unknown interpolation method {method!r}; expected one of {METHODS}")
    clamped = np.clip(positions, grid[0], grid[-1])
    identity = np.eye(grid.size)
    nearest = nearest_index(grid, positions)
    if grid.size == 1 or method == "nearest":
        weights = identity[nearest]
    elif method == "linear":
        weights = make_interp_spline(grid, identity, k=1, axis=0)(clamped)
    else:
        weights = CubicSpline(grid, identity, axis=0)(clamped)
    acquired = np.abs(grid[nearest] - positions) <= POSITION_TOLERANCE_MM
    weights[acquired] = identity[nearest[acquired]]
    return weights


def _by_row_blocks(volume: np.ndarray, bytes_per_row: int, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply ``compute`` to blocks of rows of ``volume`` ``[H, ...]`` and stack the results."""
    rows = max(1, MEMORY_BUDGET_BYTES // max(bytes_per_row, 1))
    return np.concatenate([compute(volume[start : start + rows]) for start in range(0, volume.shape[0], rows)])


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
    grid = sparse_eye.bscan_positions
    positions = np.asarray(positions_mm, dtype=np.float64).reshape(-1)
    if method == "nearest":  # a pure selection: copy the B-scans instead of multiplying
        chosen = nearest_index(grid, positions)
        return MethodPrediction(
            intensity=sparse_eye.oct[:, :, chosen],
            labels=None if sparse_eye.labels is None else sparse_eye.labels[:, :, chosen],
        )
    weights = interpolation_matrix(grid, positions, method).T.astype(np.float32)  # [N, Q]
    _, width, count = sparse_eye.shape
    intensity = _by_row_blocks(
        sparse_eye.oct, width * (count + positions.size) * 8, lambda rows: rows.astype(np.float32) @ weights
    )
    labels = None
    if sparse_eye.labels is not None:
        nearest = interpolation_matrix(grid, positions, "nearest").T.astype(np.float32)
        classes = np.arange(int(sparse_eye.labels.max()) + 1, dtype=np.uint8)[:, None]  # [C, 1]
        scoring = weights + TIE_BREAK * nearest

        def interpolate_labels(rows: np.ndarray) -> np.ndarray:
            one_hot = (rows[:, :, None, :] == classes).astype(np.float32)  # [h, W, C, N]
            return np.argmax(one_hot @ scoring, axis=2).astype(np.uint8)  # [h, W, Q]

        labels = _by_row_blocks(
            sparse_eye.labels.astype(np.uint8, copy=False),
            width * classes.size * (count + positions.size) * 8,
            interpolate_labels,
        )
    return MethodPrediction(intensity=intensity, labels=labels)


def classical_baselines(sparse_eye: Eye, positions_mm: np.ndarray) -> dict[str, MethodPrediction]:
    """``{"nearest": ..., "linear": ..., "cubic": ...}`` predictions at ``positions_mm [Q]``."""
    return {method: interpolate_slow_axis(sparse_eye, positions_mm, method) for method in METHODS}
