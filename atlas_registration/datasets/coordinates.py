"""Physical coordinates: every voxel at its position in mm, mapped onto [-1, 1] by a fixed extent.

A voxel ``(i, j, k)`` of an eye lies at ``(i * dH, j * dW, bscan_positions[k])`` mm. The
extent ``(EH, EW, ED)`` mm of the reference grid (the atlas's) maps ``[0, E]`` onto
``[-1, 1]`` on each axis, the same for every eye of a run. An eye given with every 16th
B-scan therefore lands its B-scans exactly where the dense eye has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

import numpy as np
import torch

T = TypeVar("T")


class EyeGrid(Protocol):
    """What places an eye's voxels: an :class:`~retina_data.eye.Eye` in memory, or a
    :class:`~atlas_registration.datasets.store_eyes.StoredEye` whose voxels stay in its store."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, D)``."""
        ...

    @property
    def spacing(self) -> tuple[float, float, float]:
        """``(dH, dW, dD)`` mm."""
        ...

    @property
    def bscan_positions(self) -> np.ndarray:
        """Slow-axis positions ``[D]`` mm."""
        ...


def triple(values: Iterable[T]) -> tuple[T, T, T]:
    """The three per-axis values ``(H, W, D)`` of ``values`` as a tuple.

    Raises:
        ValueError: ``values`` does not hold exactly three.
    """
    height, width, depth = values
    return height, width, depth


def grid_extent(shape: Sequence[int], spacing: Sequence[float]) -> tuple[float, float, float]:
    """Extent ``(EH, EW, ED)`` mm from the first to the last voxel centre of a ``shape`` grid."""
    return triple(float(max(n - 1, 1) * s) for n, s in zip(shape, spacing))


def axis_positions(eye: EyeGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mm positions of the eye's rows ``[H]``, columns ``[W]`` and B-scans ``[D]``."""
    height, width, _ = eye.shape
    return (np.arange(height) * eye.spacing[0], np.arange(width) * eye.spacing[1], np.asarray(eye.bscan_positions))


def normalise(positions_mm: np.ndarray, extent_mm: float) -> np.ndarray:
    """mm positions ``[n]`` -> normalised coordinates ``2 x / E - 1`` ``[n]`` (float32)."""
    return (2.0 * np.asarray(positions_mm, dtype=np.float64) / extent_mm - 1.0).astype(np.float32)


def eye_axes(eye: EyeGrid, extent_mm: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised coordinates of the eye's rows ``[H]``, columns ``[W]`` and B-scans ``[D]``."""
    return triple(normalise(p, e) for p, e in zip(axis_positions(eye), extent_mm))


def regular_axes(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised axes of a regular grid of ``shape`` spanning [-1, 1] (any resolution of the atlas)."""
    return triple(np.linspace(-1.0, 1.0, int(n), dtype=np.float32) for n in shape)


def grid_coordinates(axes: Sequence[np.ndarray]) -> torch.Tensor:
    """``coords [h, w, d, 3]`` float32 of the outer product of three axes."""
    mesh = np.meshgrid(*axes, indexing="ij")
    return torch.from_numpy(np.stack(mesh, axis=-1).astype(np.float32))


def mm_per_unit(extent_mm: Sequence[float]) -> torch.Tensor:
    """``[3]`` mm per normalised unit: a normalised displacement times this is in mm."""
    return torch.tensor([e / 2.0 for e in extent_mm], dtype=torch.float32)
