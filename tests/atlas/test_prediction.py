"""Dense prediction, inverse displacements and sampling volumes at normalised coordinates."""

from __future__ import annotations

import numpy as np
import torch

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates
from atlas_registration.inference import inverse_displacement, predict_on_grid, sample_volume


def _smooth_shift(coords: torch.Tensor) -> torch.Tensor:
    return 0.1 * torch.sin(coords)


def _small_wave(coords: torch.Tensor) -> torch.Tensor:
    return 0.05 * torch.sin(3 * coords)


def test_chunked_prediction_equals_one_pass():
    torch.manual_seed(0)
    atlas = AtlasINR(16, 2, 4, 30.0)
    coords = grid_coordinates([np.linspace(-1, 1, n, dtype=np.float32) for n in (5, 4, 3)])
    whole = predict_on_grid(atlas, coords, _smooth_shift, chunk=10**6)
    parts = predict_on_grid(atlas, coords, _smooth_shift, chunk=7)
    np.testing.assert_allclose(parts.intensity, whole.intensity, atol=1e-6)
    np.testing.assert_array_equal(parts.labels, whole.labels)
    np.testing.assert_allclose(whole.displacement, 0.1 * np.sin(coords.numpy()), atol=1e-6)


def test_inverse_of_smooth_displacement_composes_to_identity():
    y = torch.rand(4, 4, 4, 3) * 2 - 1
    v = inverse_displacement(_small_wave, y, iterations=20)
    torch.testing.assert_close(v + _small_wave((y + v)[None])[0], torch.zeros_like(y), atol=1e-5, rtol=0)


def test_sampling_at_voxel_coordinates_returns_voxel_values(tiny_eyes, tiny_extent):
    eye = tiny_eyes[0]
    axes = eye_axes(eye, tiny_extent)
    coords = grid_coordinates(axes)
    np.testing.assert_allclose(sample_volume(eye.oct, coords, axes), eye.oct, atol=1e-5)
    np.testing.assert_array_equal(sample_volume(eye.labels, coords, axes, nearest=True), eye.labels)
