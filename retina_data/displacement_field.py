"""Displacement fields as ITK vector images, applicable by SimpleITK, ANTs and Slicer.

A registration gives, for every voxel ``x`` of an image ``[H, W, D]`` (the fixed image), a
displacement ``u(x)`` in mm along our array axes ``(H, W, D)``, with the moving image sampled at
``x + u(x)``. ITK's ``DisplacementFieldTransform`` maps a physical point ``p`` to ``p + d(p)``
and resampling pulls the moving image at ``T(p)``: the same convention, once ``u`` is expressed
in ITK's physical frame (LPS, mm).

The field is written with the geometry :mod:`retina_data.nifti` gives the image of the same grid
(spacing, origin from the first slow-axis position, direction: ``H`` posterior, ``W`` to the
patient's left, ``D`` inferior), as a 3-component vector image (NIfTI intent "vector", written by
SimpleITK), its components in LPS mm: ``d = R u`` with ``R`` the LPS direction matrix, whose
columns are our axes' unit vectors. This is the convention of ITK and ANTs displacement fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retina_data.files import atomic_save, refuse_existing
from retina_data.nifti import oriented_affine

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
"""NIfTI's RAS+ world coordinates to ITK's LPS+ (x and y flipped)."""


def itk_geometry(spacing: Sequence[float], slow_origin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(origin [3], direction [3, 3])`` in LPS of an ``[H, W, D]`` grid as :func:`~retina_data.nifti.write_nifti`
    orients it; ``direction``'s columns are the unit vectors of ``H``, ``W``, ``D``."""
    affine = oriented_affine(tuple(float(s) for s in spacing), 3, slow_origin)
    lps = RAS_TO_LPS @ affine[:3, :3]
    return RAS_TO_LPS @ affine[:3, 3], lps / np.linalg.norm(lps, axis=0)


def to_physical(displacement_mm: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Array-axis displacements ``[3, H, W, D]`` (mm along H, W, D) -> LPS vectors ``[H, W, D, 3]`` (mm)."""
    return np.einsum("ij,jhwd->hwdi", direction, np.asarray(displacement_mm, dtype=np.float64))


def write_displacement_field(
    path: str | Path,
    displacement_mm: np.ndarray,
    spacing: Sequence[float],
    positions: np.ndarray | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``displacement_mm [3, H, W, D]`` (mm along our axes H, W, D) as an ITK displacement field.

    Args:
        path: ``.nii.gz`` (or any format SimpleITK writes vector images to, e.g. ``.mha``).
        displacement_mm: the displacement of every voxel, components in array-axis order.
        spacing: ``(dH, dW, dD)`` in mm of the grid.
        positions: mm positions of the slow-axis slices (``D``); the first gives the origin, as for
            the image written by :func:`~retina_data.nifti.write_nifti` on this grid.

    Returns:
        ``path``; ``sitk.DisplacementFieldTransform(sitk.ReadImage(path, sitk.sitkVectorFloat64))``
        applies it.
    """
    import SimpleITK as sitk

    path = refuse_existing(path, overwrite)
    displacement_mm = np.asarray(displacement_mm)
    if displacement_mm.ndim != 4 or displacement_mm.shape[0] != 3 or len(spacing) != 3:
        raise ValueError(
            f"{path}: expected a displacement [3, H, W, D] and three spacings, got "
            f"{displacement_mm.shape} and {len(spacing)}"
        )
    origin, direction = itk_geometry(spacing, float(positions[0]) if positions is not None and len(positions) else 0.0)
    vectors = to_physical(displacement_mm, direction).astype(np.float32)
    # SimpleITK's arrays are [z, y, x, component] with x the first image index: our H
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(vectors, (2, 1, 0, 3))), isVector=True)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in direction.reshape(-1)])
    atomic_save(path, lambda tmp: sitk.WriteImage(image, str(tmp), True), overwrite=overwrite)
    return path
