"""Bruch's membrane found in the image, for scans that come without labels or a BM line.

Flattening at Bruch's membrane (BM) needs its depth in every A-scan. Imported scans mostly
come without labels, so the BM is found where the image shows it: the retinal pigment
epithelium (RPE) is the deepest of the bright outer bands, and BM is its lower border,
where the brightness falls most steeply into the choroid. Per A-scan of the smoothed volume:

1. the RPE peak: the deepest row whose brightness reaches ``peak_fraction`` of the A-scan's
   brightest value and is a local maximum (the RNFL, as bright, lies far above it);
2. the BM row: the steepest fall of brightness within ``search_um`` below that peak, refined
   to a fraction of a row by a parabola through the gradient's three samples;
3. the surface is regularised: A-scans far from the median of their neighbourhood (they
   locked onto another band, e.g. a large vessel above its own shadow) are refilled from
   their neighbours, then the surface is smoothed lightly.

Measured on the phantom against its known BM (``benchmarks`` / tests): see the README.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from retina_data.errors import DataError


def detect_bm_rows(
    oct_volume: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    peak_fraction: float = 0.75,
    search_um: float = 40.0,
    smooth_um: float = 8.0,
    outlier_um: float = 15.0,
) -> np.ndarray:
    """BM row per A-scan ``[W, D]`` (fractional) of an unflattened OCT volume ``[H, W, D]``.

    Args:
        oct_volume: display-scale intensities (brighter = more reflective), any range.
        spacing: voxel size ``(dH, dW, dD)`` in mm.
        peak_fraction: share of an A-scan's brightest value that the RPE peak reaches.
        search_um: depth below the RPE peak searched for the steepest fall.
        smooth_um: depth smoothing (Gaussian sigma) before the search.
        outlier_um: an A-scan this far from its neighbourhood's median is replaced.
    """
    volume = np.asarray(oct_volume, dtype=np.float32)
    if volume.ndim != 3 or volume.shape[0] < 8:
        raise DataError(f"BM detection needs an OCT volume [H >= 8, W, D], got shape {volume.shape}")
    d_h, d_w, _ = spacing
    sigma_rows = max(smooth_um / 1000.0 / d_h, 0.5)
    sigma_cols = max(0.02 / d_w, 0.5)  # 20 um across the B-scan
    smooth = ndimage.gaussian_filter(volume, (sigma_rows, sigma_cols, 0.0), mode="nearest")
    height = smooth.shape[0]
    rows = np.arange(height)[:, None, None]
    interior = np.zeros_like(smooth, dtype=bool)
    interior[1:-1] = (smooth[1:-1] >= smooth[:-2]) & (smooth[1:-1] >= smooth[2:])
    bright = interior & (smooth >= peak_fraction * smooth.max(axis=0, keepdims=True))
    peak = np.where(bright, rows, -1).max(axis=0)  # deepest bright local maximum, [W, D]
    peak = np.where(peak < 0, np.argmax(smooth, axis=0), peak)
    gradient = np.diff(smooth, axis=0, append=smooth[-1:])  # fall from row r to r + 1 at index r
    window = max(round(search_um / 1000.0 / d_h), 2)
    offsets = np.arange(window + 1)
    candidates = np.clip(peak[None] + offsets[:, None, None], 0, height - 2)  # [window + 1, W, D]
    falls = np.take_along_axis(gradient, candidates, axis=0)
    steepest = np.take_along_axis(candidates, np.argmin(falls, axis=0)[None], axis=0)[0]
    left = np.take_along_axis(gradient, np.clip(steepest - 1, 0, height - 1)[None], axis=0)[0]
    centre = np.take_along_axis(gradient, steepest[None], axis=0)[0]
    right = np.take_along_axis(gradient, np.clip(steepest + 1, 0, height - 1)[None], axis=0)[0]
    curvature = left - 2 * centre + right
    offset = np.where(curvature > 1e-12, 0.5 * (left - right) / np.where(curvature > 1e-12, curvature, 1.0), 0.0)
    bm = steepest + np.clip(offset, -0.5, 0.5) + 1.0  # the fall from row r into r + 1: r + 1 is the first choroid row
    return _regularised(
        bm,
        tolerance_rows=max(outlier_um / 1000.0 / d_h, 1.0),
        window=(_odd(min(bm.shape[0], max(round(0.75 / d_w), 3))), _odd(min(bm.shape[1], 5))),
    )


def _odd(n: int) -> int:
    return n if n % 2 else max(n - 1, 1)


def _regularised(bm: np.ndarray, tolerance_rows: float, window: tuple[int, int]) -> np.ndarray:
    """The BM surface ``[W, D]`` with A-scans that locked onto another band replaced.

    An A-scan whose row lies more than ``tolerance_rows`` from the median of its
    neighbourhood (``window`` A-scans x B-scans, about 0.75 mm across) is an outlier (under a
    large vessel's shadow the vessel itself is the brightest band); outliers are filled from
    their inlying neighbours by normalised Gaussian averaging, then the surface is smoothed
    lightly.
    """
    reference = ndimage.median_filter(bm, size=window, mode="mirror")
    inlier = (np.abs(bm - reference) <= tolerance_rows).astype(np.float64)
    sigma = (window[0] / 4, window[1] / 4)
    weight = ndimage.gaussian_filter(inlier, sigma, mode="nearest")
    filled_values = ndimage.gaussian_filter(bm * inlier, sigma, mode="nearest") / np.maximum(weight, 1e-9)
    filled = np.where(inlier > 0, bm, np.where(weight > 1e-6, filled_values, reference))
    return ndimage.gaussian_filter(filled, (1.5, 0.5), mode="nearest")
