"""Training samples: random strided low-resolution patches and whole eyes.

``SAMPLE_MODE: downsample`` (the reference's): on an axis of ``n`` voxels with patch size
``p`` the stride is ``n // p`` and the patch starts at a random phase in ``[0, n // p)``, so one
patch is a random sub-grid spanning the whole eye and the phases together cover every voxel.
``crop``: a contiguous block of ``p`` voxels at a random offset. Where the eye has fewer
voxels than the patch, the patch takes all of them (the reference would divide by zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates, triple
from atlas_registration.datasets.store_eyes import AtlasEye, StoredEye

SAMPLE_MODES = ("downsample", "crop")


@dataclass(frozen=True)
class PatchGeometry:
    """Per-axis patch size, stride and the number of valid start positions for one volume shape."""

    size: tuple[int, int, int]
    stride: tuple[int, int, int]
    starts: tuple[int, int, int]

    @classmethod
    def fit(cls, shape: Sequence[int], patch_size: Sequence[int], mode: str = "downsample") -> PatchGeometry:
        """The geometry of ``patch_size`` patches (each axis clipped to ``shape``) in ``mode``."""
        if mode not in SAMPLE_MODES:
            raise ValueError(f"unknown SAMPLE_MODE {mode!r}; expected one of {SAMPLE_MODES}")
        size, stride, starts = [], [], []
        for n, p in zip(shape, patch_size):
            n, p = int(n), min(int(p), int(n))
            step = n // p if mode == "downsample" else 1
            size.append(p)
            stride.append(step)
            starts.append(step if mode == "downsample" else n - p + 1)
        return cls(triple(size), triple(stride), triple(starts))

    def indices(self, offset: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel indices ``[ph]``, ``[pw]``, ``[pd]`` of the patch starting at ``offset``."""
        return triple(o + s * np.arange(p) for o, s, p in zip(offset, self.stride, self.size))


def random_offset(geometry: PatchGeometry, generator: torch.Generator | None = None) -> tuple[int, int, int]:
    """A uniformly random start (phase) per axis."""
    return triple(int(torch.randint(0, m, (1,), generator=generator)) for m in geometry.starts)


def eye_sample(
    eye: AtlasEye,
    extent_mm: Sequence[float],
    index: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, torch.Tensor]:
    """Coordinates, intensities and labels of the voxels on the grid ``index``.

    An eye in a store (:class:`~atlas_registration.datasets.store_eyes.StoredEye`) is read here,
    only the B-scans ``index[2]``.

    Returns:
        ``coords [ph, pw, pd, 3]`` (normalised, at the voxels' mm positions),
        ``intensity [ph, pw, pd]`` float32 and ``labels [ph, pw, pd]`` int64.
    """
    if isinstance(eye, StoredEye):
        eye, index = eye.read(index[2]), (index[0], index[1], np.arange(len(index[2])))
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
    (fitted to the smallest eye), so patches batch together. Eyes in a store are read one
    patch at a time, so the dataset holds none of their voxels.
    """

    def __init__(
        self,
        eyes: Sequence[AtlasEye],
        extent_mm: Sequence[float],
        patch_size: Sequence[int],
        mode: str = "downsample",
        patches_per_eye: int = 1,
    ) -> None:
        self.eyes = list(eyes)
        self.extent_mm = tuple(extent_mm)
        smallest = np.min([eye.shape for eye in self.eyes], axis=0)
        self.geometry = PatchGeometry.fit(smallest, patch_size, mode)
        self.patches_per_eye = patches_per_eye

    def __len__(self) -> int:
        return len(self.eyes) * self.patches_per_eye

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        eye_index = item % len(self.eyes)
        eye = self.eyes[eye_index]
        offset = random_offset(self.geometry)
        sample = eye_sample(eye, self.extent_mm, self.geometry.indices(offset))
        sample["eye"] = torch.tensor(eye_index)
        return sample


class FullEyeDataset(Dataset):
    """Whole eyes (validation and test): item ``i`` is every voxel of eye ``i``, same keys as patches."""

    def __init__(
        self, eyes: Sequence[AtlasEye], extent_mm: Sequence[float], eye_indices: Sequence[int] | None = None
    ) -> None:
        self.eyes = list(eyes)
        self.extent_mm = tuple(extent_mm)
        self.eye_indices = list(eye_indices) if eye_indices is not None else list(range(len(self.eyes)))

    def __len__(self) -> int:
        return len(self.eyes)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        eye = self.eyes[item]
        sample = eye_sample(eye, self.extent_mm, triple(np.arange(n) for n in eye.shape))
        sample["eye"] = torch.tensor(self.eye_indices[item])
        return sample
