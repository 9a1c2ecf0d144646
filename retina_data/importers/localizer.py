"""B-scan lines on a localizer (SLO) image: slow-axis positions and the SLO at every A-scan.

Scanners place each B-scan on the localizer as a line (start and end point, or one point per
A-scan). Points are ``(x, y)`` in a length unit of the localizer (mm for Spectralis and DICOM);
``scale`` is the localizer's pixel size in that unit and ``offset`` the position of the centre
of pixel ``(0, 0)`` subtracted from it: pixel ``(row, col) = ((y + offset_y) / scale_y,
(x + offset_x) / scale_x)``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates


def bscan_positions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Slow-axis position ``[D]`` of each B-scan from its start and end points ``[D, 2]``:
    distance of its start from the first one's, across the scan line; ``None`` when they are
    not strictly increasing (e.g. a radial scan)."""
    if len(starts) == 1:
        return np.zeros(1)
    direction = ends[0] - starts[0]
    length = np.linalg.norm(direction)
    if length == 0:
        return None
    normal = np.array([-direction[1], direction[0]]) / length
    positions = (starts - starts[0]) @ normal
    if positions[-1] < 0:
        positions = 0.0 - positions
    return positions if np.all(np.diff(positions) > 0) else None


def ascan_points(starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Points ``[W, D, 2]`` of the A-scans of linear B-scans: A-scan ``w`` of B-scan ``d`` lies
    at ``start[d] + (end[d] - start[d]) * w / (W - 1)``."""
    t = np.linspace(0.0, 1.0, width)[:, None, None]
    return starts[None] + (ends - starts)[None] * t


def sample_localizer(
    localizer: np.ndarray, points: np.ndarray, scale: tuple[float, float], offset: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, float]:
    """The localizer ``[rows, cols]`` sampled bilinearly at A-scan ``points [W, D, 2]``: SLO ``[W, D]``.

    Returns the samples (0 outside the image) and the fraction of A-scans inside the image.
    """
    cols = (points[..., 0] + offset[0]) / scale[0]
    rows = (points[..., 1] + offset[1]) / scale[1]
    inside = (rows >= -0.5) & (rows <= localizer.shape[0] - 0.5) & (cols >= -0.5) & (cols <= localizer.shape[1] - 0.5)
    samples = map_coordinates(np.asarray(localizer, dtype=np.float32), [rows, cols], order=1, mode="nearest")
    return np.where(inside, samples, 0.0).astype(np.float32), float(inside.mean())
