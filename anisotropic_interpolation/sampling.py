"""Sparse B-scans of several eyes (kept on the device, or read per step by
:mod:`anisotropic_interpolation.streaming`), and random point batches drawn from them.

Coordinates are normalised per eye: depth (``H``) and the fast axis (``W``) span ``[-1, 1]``;
the slow axis maps the eye's *input* B-scans onto ``[-s, s]`` by their positions in mm,
``s = SLICE_COORD_SCALE`` (the reference's 0.1: ``linspace(-1, 1, D) / 10`` over the D input
B-scans), so gap B-scans and positions between input B-scans get exact,
resolution-independent coordinates (the 31 B-scans of an evaluation volume get the
reference's ``linspace(-1, 1, 31) / 10``, its 16 inputs the same z as in their own volume).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from retina_data.errors import DataError
from retina_data.eye import Eye


def slice_coordinates(positions_mm: np.ndarray, input_positions_mm: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Slow-axis coordinates ``[n]`` of ``positions_mm``: the input B-scans span ``[-scale, scale]``."""
    first, last = float(input_positions_mm[0]), float(input_positions_mm[-1])
    extent = last - first if last > first else 1.0
    return (scale * (2.0 * (np.asarray(positions_mm, dtype=np.float64) - first) / extent - 1.0)).astype(np.float32)


def axis_coordinates(size: int, device: torch.device | str = "cpu") -> Tensor:
    """``[size]`` evenly spaced coordinates on ``[-1, 1]`` (0 for a single sample)."""
    if size == 1:
        return torch.zeros(1, device=device)
    return torch.linspace(-1.0, 1.0, size, device=device)


@dataclass
class PointBatch:
    """A batch of ``P`` square patches of side ``p`` (``N = P p²`` points).

    Attributes:
        coords: ``[N, 3]`` normalised (depth, fast, slow) coordinates.
        extra: ``[N, 1]`` SLO value at each point's A-scan, or ``None``.
        eye: ``[N]`` index of each point's eye.
        intensity: ``[P, p, p]`` true intensities.
        labels: ``[N]`` true classes (int64) or ``None``.
    """

    coords: Tensor
    extra: Tensor | None
    eye: Tensor
    intensity: Tensor
    labels: Tensor | None


class TrainingVolumes(ABC):
    """The input B-scans of ``num_eyes`` eyes of one shape ``[height, width, num_slices]`` that
    training and latent fits draw their point batches from: :class:`SparseVolumes` (kept on the
    device) or :class:`anisotropic_interpolation.streaming.StreamedVolumes` (read from an eye
    store per step). Both give the same batches for the same generator state.

    Attributes:
        num_eyes, height, width, num_slices: ``E, H, W, S``.
        device: where the batches are.
        slice_coords: ``[E, S]`` normalised slow-axis coordinate of every input B-scan.
    """

    num_eyes: int
    height: int
    width: int
    num_slices: int
    device: torch.device
    slice_coords: Tensor
    images_at_once: int | None = None
    """Whole B-scans a caller should ask :meth:`bscans` for at most at a time (``None``: any number)."""

    @property
    def num_points(self) -> int:
        return self.num_eyes * self.height * self.width * self.num_slices

    def patch_size(self, wanted: int) -> int:
        """``wanted`` limited to the B-scan size."""
        return max(1, min(wanted, self.height, self.width))

    def sample(self, num_patches: int, patch: int, generator: torch.Generator) -> PointBatch:
        """``num_patches`` random ``patch x patch`` patches from random eyes and input B-scans."""
        return self.patches(*self.draw_patches(num_patches, patch, generator), patch)

    def draw_patches(
        self, num_patches: int, patch: int, generator: torch.Generator, num_eyes: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Random ``eye, bscan, top, left [P, 1, 1]`` (eye, input B-scan and top-left corner) of
        ``num_patches`` patches among ``num_eyes`` eyes of this shape (``None``: these eyes; the
        eyes of all processes when each holds a shard of them)."""
        device = self.device
        shape = (num_patches, 1, 1)
        eye = torch.randint(self.num_eyes if num_eyes is None else num_eyes, shape, device=device, generator=generator)
        bscan = torch.randint(self.num_slices, shape, device=device, generator=generator)
        top = torch.randint(self.height - patch + 1, shape, device=device, generator=generator)
        left = torch.randint(self.width - patch + 1, shape, device=device, generator=generator)
        return eye, bscan, top, left

    def patches(self, eye: Tensor, bscan: Tensor, top: Tensor, left: Tensor, patch: int) -> PointBatch:
        """The ``patch x patch`` patches at ``top, left [P, 1, 1]`` of the input B-scans ``bscan [P, 1, 1]``
        of the eyes ``eye [P, 1, 1]``."""
        offsets = torch.arange(patch, device=self.device)
        return self.gather(eye, bscan, top + offsets[None, :, None], left + offsets[None, None, :])

    def bscans(self, eye: Tensor, bscan: Tensor) -> PointBatch:
        """Whole input B-scans ``bscan [P]`` of the eyes ``eye [P]`` (a batch of ``P`` ``H x W`` images)."""
        rows = torch.arange(self.height, device=self.device)[None, :, None]
        cols = torch.arange(self.width, device=self.device)[None, None, :]
        return self.gather(eye.view(-1, 1, 1), bscan.view(-1, 1, 1), rows, cols)

    @abstractmethod
    def gather(self, eye: Tensor, bscan: Tensor, rows: Tensor, cols: Tensor) -> PointBatch:
        """The points of ``P`` images: ``eye, bscan [P, 1, 1]``, ``rows [P | 1, h, 1]``, ``cols [P | 1, 1, w]``."""

    @abstractmethod
    def subset(self, eyes: Sequence[int]) -> TrainingVolumes:
        """Only the eyes ``eyes`` (indices into these eyes; they become eyes ``0 .. len(eyes) - 1``)."""

    @abstractmethod
    def select_bscans(self, index: Tensor) -> TrainingVolumes:
        """Only the input B-scans ``index [S']`` of every eye, with their slow-axis coordinates."""


class SparseVolumes(TrainingVolumes):
    """The input B-scans of ``E`` eyes of one shape, on one device.

    Attributes:
        intensity: ``[E, H, W, S]`` float32.
        labels: ``[E, H, W, S]`` uint8, or ``None`` (no labels used).
        slo: ``[E, W, S]`` SLO column at every input B-scan, or ``None`` (no SLO used).
        slice_coords: ``[E, S]`` normalised slow-axis coordinate of every input B-scan.
    """

    def __init__(self, intensity: Tensor, labels: Tensor | None, slo: Tensor | None, slice_coords: Tensor) -> None:
        self.intensity = intensity
        self.labels = labels
        self.slo = slo
        self.slice_coords = slice_coords
        self.num_eyes, self.height, self.width, self.num_slices = intensity.shape
        self.device = intensity.device
        self.rows = axis_coordinates(self.height, intensity.device)
        self.columns = axis_coordinates(self.width, intensity.device)

    @classmethod
    def from_eyes(
        cls, eyes: list[Eye], *, use_labels: bool, use_slo: bool, slice_scale: float, device: torch.device | str
    ) -> SparseVolumes:
        """Stack the (already sparse) eyes; every eye must have the same shape."""
        if not eyes:
            raise DataError("no eyes to train or fit on")
        shapes = {eye.shape for eye in eyes}
        if len(shapes) != 1:
            raise DataError(f"eyes fitted together need one shape [H, W, input B-scans], got {sorted(shapes)}")
        intensity = torch.as_tensor(np.stack([eye.oct for eye in eyes]).astype(np.float32), device=device)
        labels = None
        if use_labels:
            stacked = [eye.labels for eye in eyes if eye.labels is not None]
            if len(stacked) != len(eyes):
                unlabelled = ", ".join(eye.eye_id for eye in eyes if eye.labels is None)
                raise DataError(f"eyes {unlabelled}: no labels; expected labels for every training eye")
            labels = torch.as_tensor(np.stack(stacked).astype(np.uint8), device=device)
        slo = (
            torch.as_tensor(np.stack([eye.slo_at(eye.bscan_positions) for eye in eyes]), device=device)
            if use_slo
            else None
        )
        coords = np.stack([slice_coordinates(eye.bscan_positions, eye.bscan_positions, slice_scale) for eye in eyes])
        return cls(intensity, labels, slo, torch.as_tensor(coords, device=device))

    def subset(self, eyes: Sequence[int]) -> SparseVolumes:
        index = torch.as_tensor(list(eyes), dtype=torch.long, device=self.device)
        return SparseVolumes(
            self.intensity[index],
            None if self.labels is None else self.labels[index],
            None if self.slo is None else self.slo[index],
            self.slice_coords[index],
        )

    def select_bscans(self, index: Tensor) -> SparseVolumes:
        return SparseVolumes(
            self.intensity[..., index],
            None if self.labels is None else self.labels[..., index],
            None if self.slo is None else self.slo[..., index],
            self.slice_coords[:, index],
        )

    def gather(self, eye: Tensor, bscan: Tensor, rows: Tensor, cols: Tensor) -> PointBatch:
        """The points of ``P`` images: ``eye, bscan [P, 1, 1]``, ``rows [P | 1, h, 1]``, ``cols [P | 1, 1, w]``."""
        full = (eye.shape[0], rows.shape[1], cols.shape[2])
        coords = torch.stack(
            [
                self.rows[rows].expand(full),
                self.columns[cols].expand(full),
                self.slice_coords[eye, bscan].expand(full),
            ],
            dim=-1,
        ).reshape(-1, 3)
        extra = self.slo[eye, cols, bscan].expand(full).reshape(-1, 1) if self.slo is not None else None
        labels = self.labels[eye, rows, cols, bscan].reshape(-1).long() if self.labels is not None else None
        return PointBatch(
            coords, extra, eye.expand(full).reshape(-1), self.intensity[eye, rows, cols, bscan].expand(full), labels
        )
