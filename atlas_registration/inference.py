"""Dense, chunked prediction of a registration on any grid, and warping of eyes into atlas space.

A registration is a displacement function ``u`` of normalised coordinates: the atlas is
queried at ``x + u(x)`` for every voxel ``x`` of an eye, which gives the atlas's labels
and intensities in the eye's space. The eye is brought into atlas space with the inverse
transform, found by the fixed-point iteration ``v <- -u(y + v)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates
from retina_data.eye import Eye

DisplacementFn = Callable[[torch.Tensor], torch.Tensor]
"""``coords [1, N, 3]`` -> displacement ``[1, N, 3]``, both normalised."""


@dataclass
class GridPrediction:
    """The atlas seen through a registration on one grid ``[h, w, d]``.

    Attributes:
        intensity: atlas intensity at ``x + u(x)`` ``[h, w, d]`` float32.
        labels: atlas label (argmax) at ``x + u(x)`` ``[h, w, d]`` uint8.
        displacement: ``u(x)`` ``[h, w, d, 3]`` float32 in normalised units.
    """

    intensity: np.ndarray
    labels: np.ndarray
    displacement: np.ndarray


def _chunks(flat: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    return list(torch.split(flat, chunk, dim=0))


@torch.no_grad()
def predict_on_grid(
    atlas: AtlasINR, coords: torch.Tensor, displacement_fn: DisplacementFn | None = None, chunk: int = 262144
) -> GridPrediction:
    """Query the (deformed) atlas at every point of ``coords [h, w, d, 3]``, ``chunk`` points at a time."""
    device = next(atlas.parameters()).device
    shape = coords.shape[:3]
    intensity, labels, displacement = [], [], []
    for part in _chunks(coords.reshape(-1, 3), chunk):
        part = part.to(device)
        disp = displacement_fn(part[None])[0] if displacement_fn is not None else torch.zeros_like(part)
        value, logits = atlas(part.float() + disp.float())
        intensity.append(value.float().cpu())
        labels.append(logits.argmax(-1).to(torch.uint8).cpu())
        displacement.append(disp.float().cpu())
    return GridPrediction(
        intensity=torch.cat(intensity).reshape(shape).numpy(),
        labels=torch.cat(labels).reshape(shape).numpy(),
        displacement=torch.cat(displacement).reshape(*shape, 3).numpy(),
    )


def atlas_on_eye_grid(atlas: AtlasINR, eye: Eye, extent_mm: Sequence[float], chunk: int) -> GridPrediction:
    """The undeformed atlas sampled on the eye's grid (the moving image of the classical baselines)."""
    return predict_on_grid(atlas, grid_coordinates(eye_axes(eye, extent_mm)), None, chunk)


@torch.no_grad()
def inverse_displacement(
    displacement_fn: DisplacementFn,
    coords: torch.Tensor,
    iterations: int = 10,
    chunk: int = 262144,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``v [h, w, d, 3]`` (CPU) with ``y + v + u(y + v) = y`` at the atlas points ``coords [h, w, d, 3]``.

    ``u`` is evaluated on ``device`` (where its network lives).
    """
    parts = []
    for part in _chunks(coords.reshape(-1, 3), chunk):
        part = part.to(device)
        v = torch.zeros_like(part)
        for _ in range(iterations):
            v = -displacement_fn((part + v)[None])[0]
        parts.append(v.float().cpu())
    return torch.cat(parts).reshape(coords.shape)


def sample_volume(
    volume: np.ndarray, coords: torch.Tensor, axes: Sequence[np.ndarray], nearest: bool = False
) -> np.ndarray:
    """Values of ``volume [H, W, D]`` at normalised ``coords [h, w, d, 3]`` (0 outside).

    ``axes`` are the volume's normalised coordinates per axis (``[H]``, ``[W]``, ``[D]``),
    assumed evenly spaced; ``nearest`` for labels, trilinear otherwise.
    """
    lows = torch.tensor([float(a[0]) for a in axes])
    highs = torch.tensor([float(a[-1]) if len(a) > 1 else float(a[0]) + 1.0 for a in axes])
    grid = 2.0 * (coords.cpu() - lows) / (highs - lows) - 1.0
    source = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    out = F.grid_sample(
        source, grid.flip(-1)[None], mode="nearest" if nearest else "bilinear", padding_mode="zeros", align_corners=True
    )[0, 0]
    return out.numpy().astype(volume.dtype if nearest else np.float32)
