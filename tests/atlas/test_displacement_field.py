"""Displacement fields written as ITK vector images: SimpleITK applies them as our own warp does."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from atlas_registration.inference import sample_volume
from retina_data.displacement_field import itk_geometry, write_displacement_field
from retina_data.nifti import write_nifti

SHAPE = (14, 10, 9)
SPACING = (0.004, 0.012, 0.05)
POSITIONS = 1.5 + 0.05 * np.arange(SHAPE[2])


def smooth_volume() -> np.ndarray:
    """A smooth, asymmetric ``[H, W, D]`` image, so any axis or sign mix-up changes the warp."""
    h, w, d = np.meshgrid(*(np.linspace(0, 1, n) for n in SHAPE), indexing="ij")
    return (np.sin(3 * h + 1) * np.cos(2 * w) + 0.5 * d * h + 0.3 * w).astype(np.float32)


def smooth_displacement() -> np.ndarray:
    """``u [3, H, W, D]`` in mm along (H, W, D): about a voxel along each axis, different per axis."""
    h, w, d = np.meshgrid(*(np.linspace(0, 1, n) for n in SHAPE), indexing="ij")
    return np.stack(
        [1.2 * SPACING[0] * np.sin(2 * w + d), -0.8 * SPACING[1] * np.cos(3 * h), 0.6 * SPACING[2] * (h - w)]
    ).astype(np.float32)


def our_warp(volume: np.ndarray, displacement_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` pulled at ``x + u(x)`` (trilinear, inference.sample_volume) and the mask of points
    that fall inside the grid."""
    axes = [np.arange(SHAPE[0]) * SPACING[0], np.arange(SHAPE[1]) * SPACING[1], POSITIONS]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    target = grid + np.moveaxis(displacement_mm, 0, -1)
    inside = np.all((target >= [a[0] for a in axes]) & (target <= [a[-1] for a in axes]), axis=-1)
    return sample_volume(volume, torch.from_numpy(target).float(), axes), inside


def test_simpleitk_displacement_field_transform_reproduces_our_warp(tmp_path) -> None:
    volume, displacement = smooth_volume(), smooth_displacement()
    image_path = write_nifti(tmp_path / "eye.nii.gz", volume, SPACING, POSITIONS)
    field_path = write_displacement_field(tmp_path / "displacement.nii.gz", displacement, SPACING, POSITIONS)
    image = sitk.ReadImage(str(image_path), sitk.sitkFloat64)
    field = sitk.ReadImage(str(field_path), sitk.sitkVectorFloat64)
    # the field lies on the image's grid, in the image's physical frame
    np.testing.assert_allclose(field.GetOrigin(), image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(field.GetDirection(), image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(field.GetSpacing(), image.GetSpacing(), rtol=1e-6)
    transform = sitk.DisplacementFieldTransform(field)
    warped = sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0)
    theirs = np.transpose(sitk.GetArrayFromImage(warped), (2, 1, 0))
    ours, inside = our_warp(volume, displacement)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(theirs[inside], ours[inside], atol=1e-4)
    # the components left in array-axis order (the old 4-D file's) warp somewhere else
    raw = sitk.GetImageFromArray(
        np.ascontiguousarray(np.transpose(displacement, (3, 2, 1, 0))).astype(np.float64), isVector=True
    )
    raw.CopyInformation(image)
    wrong = sitk.Resample(image, image, sitk.DisplacementFieldTransform(raw), sitk.sitkLinear, 0.0)
    assert np.abs(np.transpose(sitk.GetArrayFromImage(wrong), (2, 1, 0))[inside] - ours[inside]).max() > 1e-2


def test_field_geometry_is_the_oriented_image_geometry() -> None:
    """H runs posterior (+y in LPS), W to the patient's left (+x), D inferior (-z); the origin is the
    first B-scan's position along D."""
    origin, direction = itk_geometry(SPACING, 1.5)
    np.testing.assert_allclose(direction, [[0, 1, 0], [1, 0, 0], [0, 0, -1]])
    np.testing.assert_allclose(origin, [0.0, 0.0, -1.5])
