"""Input encodings of the coordinates: identity, Fourier features and a multi-resolution hash grid.

Every encoding maps ``coords [N, in_dim]`` (normalised to about ``[-1, 1]``) to
``features [N, out_dim]`` and exposes ``in_dim`` / ``out_dim``.

The hash grid is a vectorised pure-PyTorch implementation of the multi-resolution hash
encoding of Müller et al. (2022): ``n_levels`` grids whose resolution grows geometrically
from ``base_resolution`` to ``finest_resolution``; vertices are hashed by tiny-cuda-nn's
spatial hash (XOR of the vertex coordinates times large primes, in 32 bits) into a table of
``min(res ** dim, 2 ** log2_hashmap_size)`` rows per level (the reference), or, with
``dense_coarse_levels`` (ours), a level whose ``(res + 1) ** dim`` vertices fit in
``2 ** log2_hashmap_size`` rows is indexed densely; features are trilinearly interpolated.
Coordinates in ``[-1, 1]`` are mapped onto the grid's ``[0, 1]`` (the reference fed them
unchanged and truncated the negative half toward zero, evidently a bug).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

HASH_PRIMES = (1, 2654435761, 805459861, 3674653429)
UINT32_MASK = 0xFFFFFFFF


class Encoding(nn.Module):
    """Base class: ``forward(coords [N, in_dim]) -> [N, out_dim]``."""

    in_dim: int
    out_dim: int


class IdentityEncoding(Encoding):
    """The coordinates times ``factor`` (the reference: pi before SIREN layers, else 1)."""

    def __init__(self, in_dim: int = 3, factor: float = 1.0) -> None:
        super().__init__()
        self.in_dim = self.out_dim = in_dim
        self.factor = factor

    def forward(self, coords: Tensor) -> Tensor:
        return coords if self.factor == 1.0 else coords * self.factor


class FourierFeatures(Encoding):
    """Random Fourier features ``[sin(2π f x B), cos(2π f x B)]`` with ``B ~ N(0, scale²)``.

    ``B`` (the ``frequencies`` buffer, ``[in_dim, mapping_size]``) is the transpose of the
    reference's ``[MAPPING_SIZE, 3]`` matrix: ``x B = x B_ref^T``.

    Args:
        in_dim: coordinate dimensions.
        mapping_size: number of random frequencies (output has ``2 * mapping_size`` features).
        scale: standard deviation of the frequencies.
        factor: multiplies the coordinates before projection.
        seed: seed of the frequency matrix (kept in the state dict as a buffer).
    """

    frequencies: Tensor

    def __init__(
        self, in_dim: int = 3, mapping_size: int = 256, scale: float = 1.0, factor: float = 1.0, seed: int = 0
    ) -> None:
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
    """Grid resolution of each level: ``floor(base * b ** l)`` with ``b = (finest / base) ** (1 / (levels - 1))``,
    in the reference's floating-point arithmetic (so ``floor`` may land one below an exact power)."""
    if n_levels == 1:
        return [base_resolution]
    growth = math.exp((math.log(finest_resolution) - math.log(base_resolution)) / (n_levels - 1))
    return [math.floor(base_resolution * growth**level) for level in range(n_levels)]


class HashGridEncoding(Encoding):
    """Multi-resolution hash encoding (trilinear in 3-D, multilinear in general).

    Args:
        dim: coordinate dimensions (the ``DIM`` config key).
        n_levels: number of resolution levels.
        n_features_per_level: features stored per vertex.
        log2_hashmap_size: at most ``2 ** log2_hashmap_size`` table rows per level.
        base_resolution: cells per axis on the coarsest level.
        finest_resolution: cells per axis on the finest level.
        dense_coarse_levels: index levels whose vertices fit densely, every level with
            ``2 ** log2_hashmap_size`` rows (``HASHGRID.DENSE_COARSE_LEVELS``, ours); otherwise
            every level is hashed into ``min(res ** dim, 2 ** log2_hashmap_size)`` rows (the reference).

    ``forward(coords [N, dim])`` with coords in ``[-1, 1]`` (clamped) returns
    ``[N, n_levels * n_features_per_level]``, level-major. The rows of level ``l`` are
    ``table[level_offsets[l] : level_offsets[l] + table_sizes[l]]``.
    """

    resolutions: Tensor
    """Cells per axis of each level ``[L]`` (float32 buffer)."""
    dense_levels: Tensor
    """Whether each level indexes its vertices densely ``[L]`` (bool buffer)."""
    table_sizes: Tensor
    """Table rows of each level ``[L]`` (int64 buffer)."""
    strides: Tensor
    """Dense-index stride of each level and axis ``[L, dim]`` (int64 buffer)."""
    corners: Tensor
    """The ``2 ** dim`` cell corners ``[C, dim]`` in {0, 1} (int64 buffer)."""
    level_offsets: Tensor
    """First table row of each level ``[L]`` (int64 buffer)."""

    def __init__(
        self,
        dim: int = 3,
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 15,
        base_resolution: int = 16,
        finest_resolution: int = 512,
        dense_coarse_levels: bool = False,
    ) -> None:
        super().__init__()
        if dim > len(HASH_PRIMES):
            raise ValueError(f"hash grid supports up to {len(HASH_PRIMES)} dimensions, got {dim}")
        self.in_dim = dim
        self.n_levels = n_levels
        self.n_features = n_features_per_level
        self.out_dim = n_levels * n_features_per_level
        max_rows = 2**log2_hashmap_size
        resolutions = level_resolutions(n_levels, base_resolution, finest_resolution)
        self.register_buffer("resolutions", torch.tensor(resolutions, dtype=torch.float32), persistent=False)
        dense = [dense_coarse_levels and (r + 1) ** dim <= max_rows for r in resolutions]
        sizes = [max_rows if dense_coarse_levels else min(r**dim, max_rows) for r in resolutions]
        self.register_buffer("dense_levels", torch.tensor(dense), persistent=False)
        self.register_buffer("table_sizes", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        strides = [[(r + 1) ** d for d in range(dim)] for r in resolutions]
        self.register_buffer("strides", torch.tensor(strides, dtype=torch.int64), persistent=False)
        corners = list(itertools.product((0, 1), repeat=dim))
        self.register_buffer("corners", torch.tensor(corners, dtype=torch.int64), persistent=False)
        offsets = list(itertools.accumulate(sizes, initial=0))[:-1]
        self.register_buffer("level_offsets", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.table = nn.Parameter(torch.empty(sum(sizes), n_features_per_level))
        nn.init.uniform_(self.table, -1e-4, 1e-4)

    def vertex_indices(self, vertices: Tensor) -> Tensor:
        """Table rows of integer grid vertices ``[N, L, C, dim]`` -> ``[N, L, C]``."""
        dense_index = (vertices * self.strides[None, :, None, :]).sum(-1)
        hashed = (vertices[..., 0] * HASH_PRIMES[0]) & UINT32_MASK
        for axis in range(1, self.in_dim):
            hashed = hashed ^ ((vertices[..., axis] * HASH_PRIMES[axis]) & UINT32_MASK)
        hashed = hashed % self.table_sizes[None, :, None]
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
