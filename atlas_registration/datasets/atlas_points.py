"""Random voxels of the median atlas, the points the atlas INR is pretrained on."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from atlas_registration.datasets.coordinates import grid_coordinates


class AtlasPointsDataset(Dataset):
    """Random voxels of the median atlas: each item holds ``points`` of them.

    Items: ``coords [P, 3]`` (normalised), ``intensity [P]``, ``labels [P]`` int64.
    """

    def __init__(
        self,
        intensity: np.ndarray,
        labels: np.ndarray,
        axes: tuple[np.ndarray, np.ndarray, np.ndarray],
        points: int,
        steps: int,
    ) -> None:
        self.coords = grid_coordinates(axes).reshape(-1, 3)
        self.intensity = torch.from_numpy(np.ascontiguousarray(intensity, dtype=np.float32)).reshape(-1)
        self.labels = torch.from_numpy(labels.astype(np.int64)).reshape(-1)
        self.points = min(points, self.coords.shape[0])
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        index = torch.randint(0, self.coords.shape[0], (self.points,))
        return {"coords": self.coords[index], "intensity": self.intensity[index], "labels": self.labels[index]}
