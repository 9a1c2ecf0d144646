"""Jacobian determinant of a dense deformation, to measure folding.

A displacement field ``u [3, H, W, D]`` (mm, components in our axis order dH, dW, dD)
defines the transform ``phi(x) = x + u(x)``. Its Jacobian matrix is ``I + grad u`` with
``(grad u)[i, j] = d u_i / d x_j``, taken here by central finite differences in mm
(``np.gradient`` with the voxel spacing; one-sided at the volume border). A determinant
``<= 0`` marks a voxel where the transform folds (is not locally invertible).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def jacobian_determinant(displacement: np.ndarray, spacing_mm: Sequence[float], chunk_size: int = 32) -> np.ndarray:
    """Determinant of the Jacobian of ``x + u(x)`` at every voxel.

    The volume is processed in chunks of ``chunk_size`` B-scans (last axis) with a
    one-voxel halo, which gives the same values as one pass over the whole volume while
    bounding the memory of the nine derivative arrays.

    Args:
        displacement: ``u [3, H, W, D]`` in mm.
        spacing_mm: voxel size ``(dH, dW, dD)`` in mm.
        chunk_size: B-scans per chunk (>= 1).

    Returns:
        ``det [H, W, D]``, float32 for float32 input and float64 otherwise.
    """
    displacement = np.asarray(displacement)
    if displacement.ndim != 4 or displacement.shape[0] != 3:
        raise ValueError(f"displacement must be [3, H, W, D], got shape {displacement.shape}")
    if len(spacing_mm) != 3:
        raise ValueError(f"spacing must have 3 values (dH, dW, dD), got {spacing_mm}")
    if min(displacement.shape[1:]) < 2:
        raise ValueError(f"finite differences need >= 2 voxels on every axis, got {displacement.shape[1:]}")
    dtype = np.float32 if displacement.dtype == np.float32 else np.float64
    depth = displacement.shape[3]
    step = max(int(chunk_size), 1)
    det = np.empty(displacement.shape[1:], dtype=dtype)
    for start in range(0, depth, step):
        stop = min(start + step, depth)
        low, high = max(start - 1, 0), min(stop + 1, depth)
        piece = _determinant(displacement[:, :, :, low:high].astype(dtype, copy=False), spacing_mm)
        det[:, :, start:stop] = piece[:, :, start - low : stop - low]
    return det


def _determinant(displacement: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """``det(I + grad u)`` of a ``[3, H, W, D]`` block by the rule of Sarrus."""
    grad = [np.gradient(displacement[i], *[float(s) for s in spacing_mm]) for i in range(3)]
    a, b, c = grad[0][0] + 1.0, grad[0][1], grad[0][2]
    d, e, f = grad[1][0], grad[1][1] + 1.0, grad[1][2]
    g, h, k = grad[2][0], grad[2][1], grad[2][2] + 1.0
    return a * (e * k - f * h) - b * (d * k - f * g) + c * (d * h - e * g)


def nonpositive_fraction(det: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of voxels (inside ``mask`` when given) whose determinant is ``<= 0``.

    Args:
        det: Jacobian determinants, any shape.
        mask: boolean array of the same shape selecting the voxels to count.

    Returns:
        A fraction in ``[0, 1]``; multiply by 100 for a percentage.
    """
    return _share(det, mask, strict=False)


def negative_fraction(det: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of voxels (inside ``mask`` when given) whose determinant is ``< 0``: the paper's folding.

    Bug of the reference code: it counts the negative determinants of ``2I + grad u`` (the
    identity added twice), which hides folding (``u = -1.5 x`` along one axis folds every
    voxel, ``det(I + grad u) = -0.5``, yet ``det(2I + grad u) = 0.5``). The paper describes
    ``det(I + grad u)``, which :func:`jacobian_determinant` computes; pass its result here.
    """
    return _share(det, mask, strict=True)


def _share(det: np.ndarray, mask: np.ndarray | None, strict: bool) -> float:
    det = np.asarray(det)
    values = det if mask is None else det[np.asarray(mask, dtype=bool)]
    if values.size == 0:
        raise ValueError("no voxels to count: empty determinant array or empty mask")
    folded = values < 0 if strict else values <= 0
    return float(np.count_nonzero(folded) / values.size)
