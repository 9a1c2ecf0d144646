"""Coordinate encodings: hash grid and Fourier features against known answers and the reference's rules."""

from __future__ import annotations

import math

import pytest
import torch

from anisotropic_interpolation.model.encodings import (
    FourierFeatures,
    HashGridEncoding,
    IdentityEncoding,
    level_resolutions,
)


def test_level_resolutions_grow_geometrically_from_base_to_finest() -> None:
    assert level_resolutions(5, 16, 256) == [16, 32, 64, 128, 256]
    assert level_resolutions(16, 16, 512)[:4] == [16, 20, 25, 32]


def test_level_resolutions_floor_in_the_references_arithmetic() -> None:
    """``floor(4 * 16 ** (3 / 3))`` in floating point is 63 (``4 * b ** 3 = 63.99999...``)."""
    assert level_resolutions(4, 4, 64) == [4, 10, 25, 63]


def test_reference_tables_hold_min_of_res_cubed_and_the_hash_map_size() -> None:
    grid = HashGridEncoding(
        dim=3, n_levels=16, n_features_per_level=2, log2_hashmap_size=15, base_resolution=16, finest_resolution=512
    )
    expected = [16**3, 20**3, 25**3] + [2**15] * 13
    assert grid.table_sizes.tolist() == expected
    assert grid.table.shape == (sum(expected), 2)
    assert grid.level_offsets.tolist() == [sum(expected[:level]) for level in range(16)]


def test_table_entries_start_uniform_in_plus_minus_1e_4() -> None:
    table = HashGridEncoding(dim=3, n_levels=4, log2_hashmap_size=12, base_resolution=4, finest_resolution=32).table
    assert table.abs().max() <= 1e-4 and table.abs().max() > 0.99e-4
    assert abs(table.std().item() - 1e-4 / math.sqrt(3)) < 0.03 * 1e-4 / math.sqrt(3)


def test_reference_levels_use_the_tiny_cuda_nn_hash_modulo_their_table() -> None:
    """Vertex (3, 7, 2) at resolution 10 (table 1000 rows): XOR of the 32-bit products with the primes."""
    grid = HashGridEncoding(
        dim=3, n_levels=2, n_features_per_level=1, log2_hashmap_size=12, base_resolution=8, finest_resolution=10
    )
    primes, mask = (1, 2654435761, 805459861), 0xFFFFFFFF
    expected = ((3 * primes[0]) & mask) ^ ((7 * primes[1]) & mask) ^ ((2 * primes[2]) & mask)
    index = grid.vertex_indices(torch.tensor([[[[3, 7, 2]], [[3, 7, 2]]]]))
    assert index[0, 1, 0].item() == 8**3 + expected % 1000
    assert index[0, 0, 0].item() == expected % 512


def test_coordinates_minus_one_to_one_span_the_whole_grid() -> None:
    """-1 lands on vertex 0 and +1 on vertex ``res`` (the reference truncated negative coordinates to 0)."""
    grid = HashGridEncoding(
        dim=3,
        n_levels=1,
        n_features_per_level=1,
        log2_hashmap_size=12,
        base_resolution=4,
        finest_resolution=4,
        dense_coarse_levels=True,
    )
    with torch.no_grad():
        grid.table.copy_(torch.arange(grid.table.shape[0], dtype=torch.float32)[:, None])
    corners = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [-0.5, -1.0, -1.0]])
    rows = grid.vertex_indices(torch.tensor([[0, 0, 0], [4, 4, 4], [1, 0, 0]])[:, None, None, :])[:, 0, 0]
    assert torch.equal(grid(corners)[:, 0], rows.float())


@pytest.mark.parametrize("log2_size", [12, 5])  # a dense level, and a hashed one (125 vertices, 32 rows)
def test_hash_grid_returns_the_vertex_feature_at_a_grid_vertex(log2_size: int) -> None:
    grid = HashGridEncoding(
        dim=3, n_levels=1, n_features_per_level=2, log2_hashmap_size=log2_size, base_resolution=4, finest_resolution=4
    )
    with torch.no_grad():
        grid.table.copy_(torch.randn_like(grid.table))
    vertex = torch.tensor([[1, 3, 2]])  # integer grid vertex (level 0, resolution 4)
    coords = vertex.float() / 4 * 2 - 1  # to [-1, 1]
    row = grid.vertex_indices(vertex[:, None, None, :])[0, 0, 0]
    assert torch.allclose(grid(coords)[0], grid.table[row], atol=1e-6)


def test_hash_grid_interpolates_a_linear_function_exactly() -> None:
    grid = HashGridEncoding(
        dim=3,
        n_levels=1,
        n_features_per_level=1,
        log2_hashmap_size=12,
        base_resolution=4,
        finest_resolution=4,
        dense_coarse_levels=True,
    )
    vertices = torch.stack(torch.meshgrid(*[torch.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rows = grid.vertex_indices(vertices[:, None, None, :])[:, 0, 0]
    linear = lambda p: 0.3 * p[:, 0] - 1.2 * p[:, 1] + 0.7 * p[:, 2] + 0.1  # noqa: E731 - in grid units
    with torch.no_grad():
        grid.table[rows, 0] = linear(vertices.float())
    coords = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = linear((coords + 1) / 2 * 4)
    assert torch.allclose(grid(coords)[:, 0], expected, atol=1e-5)


@pytest.mark.parametrize("dense_coarse_levels", [False, True])
def test_hash_grid_indices_stay_inside_each_level_table(dense_coarse_levels: bool) -> None:
    grid = HashGridEncoding(
        dim=3,
        n_levels=4,
        n_features_per_level=2,
        log2_hashmap_size=8,
        base_resolution=4,
        finest_resolution=64,
        dense_coarse_levels=dense_coarse_levels,
    )
    coords = torch.rand(500, 3) * 2 - 1
    position = (coords[:, None, :] + 1) / 2 * grid.resolutions[None, :, None]
    vertices = position.floor().long()[:, :, None, :] + grid.corners[None, None]
    index = grid.vertex_indices(vertices)
    start = grid.level_offsets[None, :, None]
    assert torch.all(index >= start) and torch.all(index < start + grid.table_sizes[None, :, None])
    assert grid.table.shape[0] == grid.table_sizes.sum()


def test_hash_grid_output_is_level_major_with_all_features() -> None:
    grid = HashGridEncoding(
        dim=3, n_levels=3, n_features_per_level=2, log2_hashmap_size=10, base_resolution=2, finest_resolution=8
    )
    assert grid(torch.zeros(7, 3)).shape == (7, 6)


def test_fourier_features_are_sin_and_cos_of_two_pi_x_times_factor_b() -> None:
    """``[sin(2 pi x (F B)^T), cos(2 pi x (F B)^T)]`` with ``B [MAPPING_SIZE, 3]`` (our buffer is ``B^T``)."""
    features = FourierFeatures(3, mapping_size=4, scale=2.0, factor=0.5)
    b = features.frequencies.T  # [4, 3]
    x = torch.tensor([[0.1, -0.2, 0.3], [1.0, 0.0, -1.0]])
    phase = 2 * math.pi * x @ (0.5 * b).T
    assert torch.allclose(features(x), torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1), atol=1e-5)


def test_fourier_frequencies_have_standard_deviation_scale() -> None:
    frequencies = FourierFeatures(3, mapping_size=4096, scale=2.5).frequencies
    assert frequencies.shape == (3, 4096)
    assert abs(frequencies.std().item() - 2.5) < 0.05 and abs(frequencies.mean().item()) < 0.05


def test_identity_encoding_multiplies_by_its_factor() -> None:
    coords = torch.tensor([[0.5, -1.0, 0.1]])
    assert torch.equal(IdentityEncoding(3)(coords), coords)
    assert torch.allclose(IdentityEncoding(3, math.pi)(coords), math.pi * coords)


def test_fourier_features_are_bounded_sines_and_cosines() -> None:
    features = FourierFeatures(3, mapping_size=10, scale=2.0)(torch.rand(5, 3))
    assert features.shape == (5, 20)
    assert torch.allclose(features[:, :10] ** 2 + features[:, 10:] ** 2, torch.ones(5, 10), atol=1e-5)
