"""SimpleITK baselines in our [H, W, D] order: recovered translations in mm, warping, conventions."""

from __future__ import annotations

import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from atlas_registration.baselines.classical import (
    atlas_only,
    register,
    warp_intensity,
    warp_labels,
)
from retina_data.errors import ConfigError

SHAPE = (40, 40, 24)
SPACING = (0.007, 0.047, 0.094)
"""OCT-like anisotropy: a wrong axis order would mix a 0.007 mm and a 0.094 mm voxel."""
SHIFT_VOXELS = np.array([2.0, -1.5, 1.0])


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """A smooth random volume ``[H, W, D]`` in [0, 1]."""
    volume = ndimage.gaussian_filter(np.random.default_rng(0).random(SHAPE), 3.0)
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)


@pytest.fixture(scope="module")
def shifted(blobs: np.ndarray) -> np.ndarray:
    """``moving(x) = fixed(x - s)``: the content moved by +s voxels."""
    return ndimage.shift(blobs, SHIFT_VOXELS, order=3, mode="nearest").astype(np.float32)


def interior(volume: np.ndarray, margin: int = 6) -> np.ndarray:
    return volume[..., margin:-margin, margin:-margin, margin:-margin]


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("affine", {}),
        ("bspline", {"initial_affine": False}),
        ("demons", {"initial_affine": False}),
        ("bspline", {}),  # composed with the affine start
        ("demons", {}),  # started from the affine field
    ],
)
def test_recovers_a_known_translation_in_mm_within_a_voxel(
    method: str, options: dict, blobs: np.ndarray, shifted: np.ndarray
) -> None:
    result = register(method, blobs, shifted, SPACING, **options)
    recovered_mm = interior(result.displacement_mm).reshape(3, -1).mean(axis=1)
    # pull-back: warped(x) = moving(x + u) = fixed(x + u - s), so u = +s
    error_voxels = np.abs(recovered_mm / np.asarray(SPACING) - SHIFT_VOXELS)
    assert (error_voxels < 0.5).all(), error_voxels
    assert np.abs(interior(result.warped_intensity - blobs)).mean() < 0.2 * np.abs(interior(shifted - blobs)).mean()


def test_displacement_agrees_with_simpleitk_resampling_of_the_transform(blobs: np.ndarray, shifted: np.ndarray) -> None:
    result = register("affine", blobs, shifted, SPACING)
    image = sitk.GetImageFromArray(shifted)
    image.SetSpacing(SPACING[::-1])
    resampled = sitk.GetArrayFromImage(sitk.Resample(image, image, result.transform, sitk.sitkLinear))
    np.testing.assert_allclose(interior(result.warped_intensity), interior(resampled), atol=1e-4)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_warp_by_one_voxel_reads_the_next_voxel(axis: int) -> None:
    volume = np.random.default_rng(1).random((6, 7, 8)).astype(np.float32)
    displacement = np.zeros((3, *volume.shape), dtype=np.float32)
    displacement[axis] = SPACING[axis]
    warped = warp_intensity(volume, displacement, SPACING)
    inner = [slice(None)] * 3
    inner[axis] = slice(0, -1)
    np.testing.assert_allclose(warped[tuple(inner)], np.roll(volume, -1, axis=axis)[tuple(inner)], atol=1e-6)


def test_warp_labels_picks_the_nearest_label() -> None:
    labels = np.repeat(np.arange(6, dtype=np.uint8)[:, None, None], 4, axis=1).repeat(3, axis=2)
    displacement = np.zeros((3, *labels.shape), dtype=np.float32)
    displacement[0] = 1.4 * SPACING[0]  # 1.4 rows down: the nearest voxel is the next row
    warped = warp_labels(labels, displacement, SPACING)
    assert warped.dtype == np.uint8
    np.testing.assert_array_equal(warped[:, 0, 0], [1, 2, 3, 4, 5, 5])


def test_atlas_only_keeps_the_moving_volume(blobs: np.ndarray, shifted: np.ndarray) -> None:
    result = atlas_only(blobs, shifted, SPACING)
    assert result.displacement_mm.shape == (3, *SHAPE)
    assert not result.displacement_mm.any()
    np.testing.assert_array_equal(result.warped_intensity, shifted)


def test_an_unknown_method_is_a_config_error(blobs: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="unknown registration baseline 'syn'"):
        register("syn", blobs, blobs, SPACING)


@pytest.mark.parametrize("method", ["affine", "bspline"])
def test_the_default_seed_gives_the_same_registration_in_every_run(
    method: str, blobs: np.ndarray, shifted: np.ndarray
) -> None:
    """Seed 0 means "the wall clock" to ITK; runs a second apart must still agree exactly."""
    options = {"seed": 0, "iterations": 5}
    first = register(method, blobs, shifted, SPACING, **options).displacement_mm
    time.sleep(1.1)
    second = register(method, blobs, shifted, SPACING, **options).displacement_mm
    assert np.array_equal(first, second)
