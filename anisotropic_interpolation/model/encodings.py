"""Input encodings of the coordinates: identity, Fourier features and a multi-resolution hash grid.

Every encoding maps ``coords [N, in_dim]`` (normalised to about ``[-1, 1]``) to
``features [N, out_dim]`` and exposes ``in_dim`` / ``out_dim``.

The hash grid is a vectorised pure-PyTorch implementation of the multi-resolution hash
encoding of Müller et al. (2022): ``n_levels`` grids whose resolution grows geometrically
from ``base_resolution`` to ``finest_resolution``; a level whose ``(res + 1) ** dim``
vertices fit in the table is indexed densely, finer levels are hashed by XOR of the
vertex coordinates times large primes; features are trilinearly interpolated.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

HASH_PRIMES = (1, 2654435761, 805459861, 3674653429)


class Encoding(nn.Module):
    """Base class: ``forward(coords [N, in_dim]) -> [N, out_dim]``."""

    in_dim: int
    out_dim: int


class IdentityEncoding(Encoding):
    """The coordinates unchanged."""

    def __init__(self, in_dim: int = 3) -> None:
        super().__init__()
        self.in_dim = self.out_dim = in_dim

    def forward(self, coords: Tensor) -> Tensor:
        return coords


class FourierFeatures(Encoding):
    """Random Fourier features ``[sin(2π f x B), cos(2π f x B)]`` with ``B ~ N(0, scale²)``.

    Args:
        in_dim: coordinate dimensions.
        mapping_size: number of random frequencies (output has ``2 * mapping_size`` features).
        scale: standard deviation of the frequencies.
        factor: multiplies the coordinates before projection.
        seed: seed of the frequency matrix (kept in the state dict as a buffer).
    """

    def __init__(self, in_dim: int = 3, mapping_size: int = 256, scale: float = 1.0,
                 factor: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = 2 * mapping_size
        self.factor = factor
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(in_dim, mapping_size, generator=generator) * scale)

    def forward(self, coords: Tensor) -> Tensor:
        # fp32 even under autocast: the phases reach tens of radians, which bf16 would round
        # by up to ~0.1 rad
        with torch.autocast(coords.device.type, enabled=False):
            projected = (2.0 * math.pi * self.factor) * (coords.float() @ self.frequencies)
            return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)


def level_resolutions(n_levels: int, base_resolution: int, finest_resolution: int) -> list[int]:
    """Grid resolution of each level: ``floor(base * b ** l)`` with a constant growth ``b``."""
    if n_levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [int(math.floor(base_resolution * growth ** level + 1e-9)) for level in range(n_levels)]


class HashGridEncoding(Encoding):
    """Multi-resolution hash encoding (trilinear in 3-D, multilinear in general).

    Args:
        dim: coordinate dimensions (the ``DIM`` config key).
        n_levels: number of resolution levels.
        n_features_per_level: features stored per vertex.
        log2_hashmap_size: table size per level is ``2 ** log2_hashmap_size``.
        base_resolution: cells per axis on the coarsest level.
        finest_resolution: cells per axis on the finest level.

    ``forward(coords [N, dim])`` with coords in ``[-1, 1]`` (clamped) returns
    ``[N, n_levels * n_features_per_level]``, level-major.
    """

    def __init__(self, dim: int = 3, n_levels: int = 16, n_features_per_level: int = 2,
                 log2_hashmap_size: int = 15, base_resolution: int = 16,
                 finest_resolution: int = 512) -> None:
        super().__init__()
        if dim > len(HASH_PRIMES):
            raise ValueError(f"hash grid supports up to {len(HASH_PRIMES)} dimensions, got {dim}")
        self.in_dim = dim
        self.n_levels = n_levels
        self.n_features = n_features_per_level
        self.out_dim = n_levels * n_features_per_level
        self.table_size = 2 ** log2_hashmap_size
        resolutions = level_resolutions(n_levels, base_resolution, finest_resolution)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        dense = [(r + 1) ** dim <= self.table_size for r in resolutions]
        self.register_buffer("dense_levels", torch.tensor(dense), persistent=False)
        strides = [[(r + 1) ** d for d in range(dim)] for r in resolutions]
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.int64), persistent=False)
        corners = list(itertools.product((0, 1), repeat=dim))
        self.register_buffer("corners", torch.tensor(corners, dtype=torch.int64), persistent=False)
        self.register_buffer("level_offsets", torch.arange(n_levels, dtype=torch.int64) * self.table_size,
                             persistent=False)
        self.table = nn.Parameter(torch.empty(n_levels * self.table_size, n_features_per_level))
        nn.init.uniform_(self.table, -1e-4, 1e-4)

    def vertex_indices(self, vertices: Tensor) -> Tensor:
        """Table rows of integer grid vertices ``[N, L, C, dim]`` -> ``[N, L, C]``."""
        dense_index = (vertices * self.strides[None, :, None, :]).sum(-1)
        hashed = vertices[..., 0] * HASH_PRIMES[0]
        for axis in range(1, self.in_dim):
            hashed = hashed ^ (vertices[..., axis] * HASH_PRIMES[axis])
        hashed = hashed & (self.table_size - 1)
        index = torch.where(self.dense_levels[None, :, None], dense_index, hashed)
        return index + self.level_offsets[None, :, None]

    def forward(self, coords: Tensor) -> Tensor:
        unit = ((coords.float() + 1.0) * 0.5).clamp(0.0, 1.0)
        position = unit[:, None, :] * self.resolutions[None, :, None]  # [N, L, dim]
        cell = torch.minimum(position.floor(), self.resolutions[None, :, None] - 1).clamp_min(0)
        fraction = position - cell  # [N, L, dim] in [0, 1]
        vertices = cell.long()[:, :, None, :] + self.corners[None, None]  # [N, L, C, dim]
        features = self.table[self.vertex_indices(vertices)]  # [N, L, C, F]
        corner = self.corners.to(fraction.dtype)[None, None]  # [1, 1, C, dim]
        weights = (corner * fraction[:, :, None, :] + (1 - corner) * (1 - fraction[:, :, None, :])).prod(-1)
        encoded = (features * weights[..., None]).sum(2)  # [N, L, F]
        return encoded.reshape(coords.shape[0], self.out_dim)
