"""Coordinate encodings: hash grid against known answers, Fourier features' shape and range."""

from __future__ import annotations

import pytest
import torch

from anisotropic_interpolation.model.encodings import FourierFeatures, HashGridEncoding, level_resolutions


def test_level_resolutions_grow_geometrically_from_base_to_finest() -> None:
    assert level_resolutions(5, 16, 256) == [16, 32, 64, 128, 256]


@pytest.mark.parametrize("log2_size", [12, 5])  # a dense level, and a hashed one (125 vertices, 32 rows)
def test_hash_grid_returns_the_vertex_feature_at_a_grid_vertex(log2_size: int) -> None:
    grid = HashGridEncoding(dim=3, n_levels=1, n_features_per_level=2, log2_hashmap_size=log2_size,
                            base_resolution=4, finest_resolution=4)
    with torch.no_grad():
        grid.table.copy_(torch.randn_like(grid.table))
    vertex = torch.tensor([[1, 3, 2]])  # integer grid vertex (level 0, resolution 4)
    coords = vertex.float() / 4 * 2 - 1  # to [-1, 1]
    row = grid.vertex_indices(vertex[:, None, None, :])[0, 0, 0]
    assert torch.allclose(grid(coords)[0], grid.table[row], atol=1e-6)


def test_hash_grid_interpolates_a_linear_function_exactly() -> None:
    grid = HashGridEncoding(dim=3, n_levels=1, n_features_per_level=1, log2_hashmap_size=12,
                            base_resolution=4, finest_resolution=4)
    vertices = torch.stack(torch.meshgrid(*[torch.arange(5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rows = grid.vertex_indices(vertices[:, None, None, :])[:, 0, 0]
    linear = lambda p: 0.3 * p[:, 0] - 1.2 * p[:, 1] + 0.7 * p[:, 2] + 0.1  # noqa: E731 - in grid units
    with torch.no_grad():
        grid.table[rows, 0] = linear(vertices.float())
    coords = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = linear((coords + 1) / 2 * 4)
    assert torch.allclose(grid(coords)[:, 0], expected, atol=1e-5)


def test_hash_grid_indices_stay_inside_each_level_table() -> None:
    grid = HashGridEncoding(dim=3, n_levels=4, n_features_per_level=2, log2_hashmap_size=8,
                            base_resolution=4, finest_resolution=64)
    coords = torch.rand(500, 3) * 2 - 1
    position = (coords[:, None, :] + 1) / 2 * grid.resolutions[None, :, None]
    vertices = position.floor().long()[:, :, None, :] + grid.corners[None, None]
    index = grid.vertex_indices(vertices)
    level = torch.arange(4)[None, :, None]
    assert torch.all(index >= level * grid.table_size) and torch.all(index < (level + 1) * grid.table_size)


def test_hash_grid_output_is_level_major_with_all_features() -> None:
    grid = HashGridEncoding(dim=3, n_levels=3, n_features_per_level=2, log2_hashmap_size=10,
                            base_resolution=2, finest_resolution=8)
    assert grid(torch.zeros(7, 3)).shape == (7, 6)


def test_fourier_features_are_bounded_sines_and_cosines() -> None:
    features = FourierFeatures(3, mapping_size=10, scale=2.0)(torch.rand(5, 3))
    assert features.shape == (5, 20)
    assert torch.allclose(features[:, :10] ** 2 + features[:, 10:] ** 2, torch.ones(5, 10), atol=1e-5)
