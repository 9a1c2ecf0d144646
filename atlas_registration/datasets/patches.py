"""Training samples: random strided low-resolution patches and whole eyes.

``SAMPLE_MODE: downsample`` (the paper's): a patch of ``PATCH_SIZE = (ph, pw, pd)`` voxels
taken every ``SUBSMPL_FACTOR``-th voxel from a random offset, so one patch spans a large
part of the eye at low resolution and different offsets cover every voxel over the epochs.
On an axis where the patch would not fit, the stride shrinks to ``(n - 1) // (p - 1)``, and
where the eye has fewer voxels than the patch, the patch takes all of them.
``crop`` is the same with stride 1 (a contiguous random crop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates
from retina_data.eye import Eye


@dataclass(frozen=True)
class PatchGeometry:
    """Per-axis patch size and stride for one volume shape."""

    size: tuple[int, int, int]
    stride: tuple[int, int, int]

    @classmethod
    def fit(cls, shape: Sequence[int], patch_size: Sequence[int], factor: int) -> PatchGeometry:
        """The largest patch up to ``patch_size`` with stride up to ``factor`` inside ``shape``."""
        size, stride = [], []
        for n, p in zip(shape, patch_size):
            p = min(int(p), int(n))
            size.append(p)
            stride.append(1 if p == 1 else max(1, min(int(factor), (int(n) - 1) // (p - 1))))
        return cls(tuple(size), tuple(stride))  # type: ignore[arg-type]

    def max_offset(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """Largest valid start index per axis (the last voxel of the patch stays inside)."""
        return tuple(int(n) - (p - 1) * s - 1 for n, p, s in zip(shape, self.size, self.stride))  # type: ignore[return-value]

    def indices(self, offset: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel indices ``[ph]``, ``[pw]``, ``[pd]`` of the patch starting at ``offset``."""
        return tuple(o + s * np.arange(p) for o, s, p in zip(offset, self.stride, self.size))  # type: ignore[return-value]


def random_offset(geometry: PatchGeometry, shape: Sequence[int], generator: torch.Generator | None = None
                  ) -> tuple[int, int, int]:
    """A uniformly random valid offset per axis."""
    return tuple(int(torch.randint(0, m + 1, (1,), generator=generator)) for m in geometry.max_offset(shape))  # type: ignore[return-value]


def eye_sample(eye: Eye, extent_mm: Sequence[float], index: tuple[np.ndarray, np.ndarray, np.ndarray],
               ) -> dict[str, torch.Tensor]:
    """Coordinates, intensities and labels of the voxels on the grid ``index``.

    Returns:
        ``coords [ph, pw, pd, 3]`` (normalised, at the voxels' mm positions),
        ``intensity [ph, pw, pd]`` float32 and ``labels [ph, pw, pd]`` int64.
    """
    axes = eye_axes(eye, extent_mm)
    coords = grid_coordinates([axis[i] for axis, i in zip(axes, index)])
    grid = np.ix_(*index)
    sample = {"coords": coords, "intensity": torch.from_numpy(np.ascontiguousarray(eye.oct[grid], dtype=np.float32))}
    if eye.labels is not None:
        sample["labels"] = torch.from_numpy(eye.labels[grid].astype(np.int64))
    return sample


class StridedPatchDataset(Dataset):
    """``patches_per_eye`` random strided patches of every eye per epoch.

    Item ``i`` is a patch of eye ``i % len(eyes)`` at a fresh random offset, with
    ``coords [ph, pw, pd, 3]``, ``intensity [ph, pw, pd]``, ``labels [ph, pw, pd]`` and
    ``eye`` (the eye's index, for its latent code). All eyes share one patch geometry
    (fitted to the smallest eye), so patches batch together.
    """

    def __init__(self, eyes: Sequence[Eye], extent_mm: Sequence[float], patch_size: Sequence[int],
                 factor: int, mode: str = "downsample", patches_per_eye: int = 1) -> None:
        self.eyes = list(eyes)
        self.extent_mm = tuple(extent_mm)
        smallest = np.min([eye.shape for eye in self.eyes], axis=0)
        self.geometry = PatchGeometry.fit(smallest, patch_size, factor if mode == "downsample" else 1)
        self.patches_per_eye = patches_per_eye

    def __len__(self) -> int:
        return len(self.eyes) * self.patches_per_eye

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        eye_index = item % len(self.eyes)
        eye = self.eyes[eye_index]
        offset = random_offset(self.geometry, eye.shape)
        sample = eye_sample(eye, self.extent_mm, self.geometry.indices(offset))
        sample["eye"] = torch.tensor(eye_index)
        return sample


class FullEyeDataset(Dataset):
    """Whole eyes (validation and test): item ``i`` is every voxel of eye ``i``, same keys as patches."""

    def __init__(self, eyes: Sequence[Eye], extent_mm: Sequence[float], eye_indices: Sequence[int] | None = None
                 ) -> None:
        self.eyes = list(eyes)
        self.extent_mm = tuple(extent_mm)
        self.eye_indices = list(eye_indices) if eye_indices is not None else list(range(len(self.eyes)))

    def __len__(self) -> int:
        return len(self.eyes)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        eye = self.eyes[item]
        sample = eye_sample(eye, self.extent_mm, tuple(np.arange(n) for n in eye.shape))  # type: ignore[arg-type]
        sample["eye"] = torch.tensor(self.eye_indices[item])
        return sample
