"""Classical registration baselines (SimpleITK) in our ``[H, W, D]`` axis order.

Convention (used by every function here and by the INR registration it is compared with):
``displacement_mm [3, H, W, D]`` is defined on the FIXED grid and points from each fixed
voxel to where its content is found in the MOVING image (a pull-back):

    warped(x) = moving(x + u(x))

so ``warped`` lies on the fixed grid. Component ``i`` of ``u`` is the displacement in mm
along our axis ``i`` (dH, dW, dD). To segment an eye with an atlas, register with
``fixed=eye, moving=atlas`` and warp the atlas labels; to bring eyes into atlas space,
use ``fixed=atlas``.

Axis order: ``sitk.GetImageFromArray`` reads a numpy ``[H, W, D]`` array as ITK
``(x, y, z) = (D, W, H)``, so spacings and vector components are reversed on the way in
and out of SimpleITK (:func:`_to_sitk`, :func:`_field_from_transform`). All images are put
at origin 0 with identity direction: index ``i`` sits at ``i * spacing`` mm.

Units: the optimisers run on the volumes in voxel units (unit spacing). OCT voxels are an
order of magnitude thinner along the A-scan than across it, and ITK's L-BFGS-B has no
parameter scaling, so in mm a B-spline would barely move along the wide axes; in voxel
units every axis is alike. The model classes are unchanged (an affine or B-spline map in
voxels is one in mm), and the result is converted back: ``transform`` maps fixed
physical points (mm) to moving physical points, and ``displacement_mm`` is in mm.

Warping itself (:func:`warp_intensity`, :func:`warp_labels`) is done with
``scipy.ndimage.map_coordinates`` from the dense field, so a displacement from any method
(these baselines or an INR) is applied the same way. Points that leave the volume take
the value of the nearest border voxel (a flattened retina continues in the choroid below
and the vitreous above).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from retina_data.errors import ConfigError, DataError

VOXEL_UNITS = (1.0, 1.0, 1.0)
"""Spacing the optimisers see (module docstring, Units)."""

Metric = Literal["correlation", "mean_squares", "mattes"]
"""Similarity metrics of the SimpleITK baselines."""


@dataclass
class RegistrationResult:
    """The outcome of registering ``moving`` onto ``fixed``.

    Attributes:
        displacement_mm: ``u [3, H, W, D]`` float32 on the fixed grid (pull-back, mm).
        warped_intensity: ``moving(x + u(x)) [H, W, D]`` float32.
        transform: the SimpleITK transform (fixed physical point -> moving physical point,
            in ITK's ``(x, y, z) = (D, W, H)`` order), for reuse or saving with
            ``sitk.WriteTransform``.
        seconds: wall time of the registration.
    """

    displacement_mm: np.ndarray
    warped_intensity: np.ndarray
    transform: sitk.Transform
    seconds: float


def _to_sitk(volume: np.ndarray, spacing_mm: Sequence[float]) -> sitk.Image:
    """``[H, W, D]`` numpy volume -> float32 ITK image with ITK spacing ``(dD, dW, dH)``."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume, dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in reversed(tuple(spacing_mm))))
    return image


def _field_from_transform(transform: sitk.Transform, reference: sitk.Image) -> np.ndarray:
    """Dense ``u [3, H, W, D]`` (mm, our order) of ``transform`` on ``reference``'s grid."""
    field = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        reference.GetSize(),
        reference.GetOrigin(),
        reference.GetSpacing(),
        reference.GetDirection(),
    )
    vectors = sitk.GetArrayFromImage(field)  # [H, W, D, 3] with components (dD, dW, dH)
    return np.ascontiguousarray(np.moveaxis(vectors[..., ::-1], -1, 0), dtype=np.float32)


def _check_pair(fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float]) -> None:
    if np.ndim(fixed) != 3 or np.ndim(moving) != 3:
        raise DataError(f"registration needs two [H, W, D] volumes, got {np.shape(fixed)} and {np.shape(moving)}")
    if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
        raise DataError(f"registration spacing must be 3 positive values (dH, dW, dD) in mm, got {spacing_mm}")


def sample_grid(displacement_mm: np.ndarray, spacing_mm: Sequence[float], start: int, stop: int) -> np.ndarray:
    """Voxel coordinates ``[3, H, W, stop-start]`` of ``x + u(x)`` for B-scans ``start:stop``."""
    _, height, width, _ = displacement_mm.shape
    index = np.meshgrid(np.arange(height), np.arange(width), np.arange(start, stop), indexing="ij")
    scale = np.asarray(spacing_mm, dtype=np.float64).reshape(3, 1, 1, 1)
    return np.stack(index).astype(np.float64) + displacement_mm[:, :, :, start:stop] / scale


def _warp(
    volume: np.ndarray, displacement_mm: np.ndarray, spacing_mm: Sequence[float], order: Literal[0, 1], chunk_size: int
) -> np.ndarray:
    volume = np.asarray(volume)
    displacement_mm = np.asarray(displacement_mm)
    if displacement_mm.shape[0] != 3 or displacement_mm.ndim != 4:
        raise DataError(f"displacement must be [3, H, W, D] in mm, got shape {displacement_mm.shape}")
    if volume.ndim != 3:
        raise DataError(f"volume to warp must be [H, W, D], got shape {volume.shape}")
    depth = displacement_mm.shape[3]
    out = np.empty(displacement_mm.shape[1:], dtype=volume.dtype)
    for start in range(0, depth, max(int(chunk_size), 1)):
        stop = min(start + max(int(chunk_size), 1), depth)
        coords = sample_grid(displacement_mm, spacing_mm, start, stop)
        out[:, :, start:stop] = ndimage.map_coordinates(volume, coords, order=order, mode="nearest")
    return out


def warp_intensity(
    intensity: np.ndarray, displacement_mm: np.ndarray, spacing_mm: Sequence[float], chunk_size: int = 32
) -> np.ndarray:
    """``intensity(x + u(x))`` by trilinear interpolation.

    Args:
        intensity: moving volume ``[H', W', D']`` (any grid with the same spacing).
        displacement_mm: ``u [3, H, W, D]`` on the fixed grid, mm.
        spacing_mm: voxel size ``(dH, dW, dD)`` shared by both grids.
        chunk_size: B-scans of the output computed at once (bounds memory).

    Returns:
        Warped volume ``[H, W, D]`` float32.
    """
    return _warp(np.asarray(intensity, dtype=np.float32), displacement_mm, spacing_mm, 1, chunk_size)


def warp_labels(
    labels: np.ndarray, displacement_mm: np.ndarray, spacing_mm: Sequence[float], chunk_size: int = 32
) -> np.ndarray:
    """``labels(x + u(x))`` by nearest-neighbour lookup (labels stay labels).

    Args and chunking as :func:`warp_intensity`; returns ``[H, W, D]`` in the input dtype.
    """
    return _warp(np.asarray(labels), displacement_mm, spacing_mm, 0, chunk_size)


def _in_mm(voxel_transform: sitk.Transform, spacing_mm: Sequence[float]) -> sitk.Transform:
    """``S T S^-1`` with ``S = diag(spacing)``: a voxel-unit transform acting on mm points."""
    itk_spacing = [float(s) for s in reversed(tuple(spacing_mm))]
    transform = sitk.CompositeTransform(sitk.ScaleTransform(3, itk_spacing))
    transform.AddTransform(voxel_transform)
    transform.AddTransform(sitk.ScaleTransform(3, [1.0 / s for s in itk_spacing]))
    return transform


def _result(
    voxel_transform: sitk.Transform, fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float], started: float
) -> RegistrationResult:
    """Dense field, warped moving volume and mm transform of a voxel-unit registration."""
    transform = _in_mm(voxel_transform, spacing_mm)
    displacement = _field_from_transform(transform, _to_sitk(fixed, spacing_mm))
    warped = warp_intensity(moving, displacement, spacing_mm)
    return RegistrationResult(displacement, warped, transform, time.perf_counter() - started)


def _configure(
    registration: sitk.ImageRegistrationMethod,
    fixed_image: sitk.Image,
    *,
    metric: str,
    bins: int,
    shrink_factors: Sequence[int],
    smoothing_sigmas: Sequence[float],
    sampling: float,
    seed: int,
) -> None:
    """Metric, pyramid and sampling: the same number of random points at every level,
    ``sampling`` of the finest level's voxels (all voxels of a coarse level at most)."""
    if metric == "mattes":
        registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    elif metric == "mean_squares":
        registration.SetMetricAsMeanSquares()
    elif metric == "correlation":
        registration.SetMetricAsCorrelation()
    else:
        raise ConfigError(f"registration metric must be 'mattes', 'mean_squares' or 'correlation', got {metric!r}")
    _check_pyramid(shrink_factors, smoothing_sigmas)
    if not 0.0 < sampling <= 1.0:
        raise ConfigError(f"registration sampling must be a fraction in (0, 1], got {sampling}")
    registration.SetShrinkFactorsPerLevel([int(f) for f in shrink_factors])
    registration.SetSmoothingSigmasPerLevel([float(s) for s in smoothing_sigmas])
    registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    registration.SetMetricSamplingStrategy(registration.RANDOM)
    voxels = np.prod(fixed_image.GetSize())
    per_level = [
        min(1.0, sampling * voxels / np.prod([max(n // int(f), 1) for n in fixed_image.GetSize()]))
        for f in shrink_factors
    ]
    # ITK reads seed 0 as "seed from the wall clock" (sitkWallClock): offset ours by one, so
    # SETTINGS.SEED = 0 (the default) gives the same random points in every run
    registration.SetMetricSamplingPercentagePerLevel(per_level, int(seed) + 1)
    registration.SetInterpolator(sitk.sitkLinear)


def _check_pyramid(shrink_factors: Sequence[int], smoothing_sigmas: Sequence[float]) -> None:
    if len(shrink_factors) != len(smoothing_sigmas) or not shrink_factors:
        raise ConfigError(
            f"registration pyramid: {len(shrink_factors)} shrink factors and {len(smoothing_sigmas)} "
            "smoothing sigmas; give one of each per level, coarse to fine"
        )
    if min(shrink_factors) < 1:
        raise ConfigError(f"registration pyramid: shrink factors must be >= 1, got {list(shrink_factors)}")


def _affine_transform(
    fixed_image: sitk.Image, moving_image: sitk.Image, *, iterations: int, max_step_voxels: float, **settings: Any
) -> sitk.Transform:
    initial = sitk.CenteredTransformInitializer(
        fixed_image,
        moving_image,
        sitk.AffineTransform(3),
        sitk.CenteredTransformInitializerFilter.GEOMETRY,
    )
    registration = sitk.ImageRegistrationMethod()
    _configure(registration, fixed_image, **settings)
    registration.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=iterations,
        relaxationFactor=0.7,
        gradientMagnitudeTolerance=1e-8,
        estimateLearningRate=registration.Once,
        maximumStepSizeInPhysicalUnits=max_step_voxels,
    )
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.SetInitialTransform(initial, inPlace=False)
    return registration.Execute(fixed_image, moving_image)


def affine_register(
    fixed: np.ndarray,
    moving: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    metric: Metric = "correlation",
    iterations: int = 50,
    max_step_voxels: float = 1.0,
    shrink_factors: Sequence[int] = (4, 2, 1),
    smoothing_sigmas: Sequence[float] = (2.0, 1.0, 0.0),
    sampling: float = 0.05,
    bins: int = 32,
    seed: int = 0,
) -> RegistrationResult:
    """Affine registration of ``moving`` onto ``fixed`` (both ``[H, W, D]``, one spacing).

    Multi-resolution (``shrink_factors`` / ``smoothing_sigmas`` in voxels per level, coarse
    to fine), a regular-step gradient descent (parameter scales from the physical shift,
    steps of at most ``max_step_voxels`` voxels) and, per metric
    evaluation, ``sampling`` times the finest level's voxel count of random points at every
    level. The default metric, normalised correlation, ignores the global gain and offset
    that differ between an eye and a median atlas.

    Returns:
        :class:`RegistrationResult` with the pull-back displacement (module docstring).
    """
    _check_pair(fixed, moving, spacing_mm)
    started = time.perf_counter()
    fixed_image, moving_image = _to_sitk(fixed, VOXEL_UNITS), _to_sitk(moving, VOXEL_UNITS)
    transform = _affine_transform(
        fixed_image,
        moving_image,
        iterations=iterations,
        max_step_voxels=max_step_voxels,
        metric=metric,
        bins=bins,
        shrink_factors=shrink_factors,
        smoothing_sigmas=smoothing_sigmas,
        sampling=sampling,
        seed=seed,
    )
    return _result(transform, fixed, moving, spacing_mm, started)


def _bspline(
    fixed_image: sitk.Image,
    moving_image: sitk.Image,
    initial: sitk.Transform,
    *,
    iterations: int,
    mesh_size: Sequence[int],
    **settings: Any,
) -> sitk.Transform:
    """Cubic B-spline with ``mesh_size`` intervals (our axis order) on top of ``initial``."""
    bspline = sitk.BSplineTransformInitializer(fixed_image, [int(n) for n in reversed(tuple(mesh_size))], order=3)
    registration = sitk.ImageRegistrationMethod()
    _configure(registration, fixed_image, **settings)
    registration.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-8,
        numberOfIterations=iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=2 * iterations,
    )
    registration.SetMovingInitialTransform(initial)
    registration.SetInitialTransform(bspline, inPlace=True)
    registration.Execute(fixed_image, moving_image)
    composite = sitk.CompositeTransform(initial)
    composite.AddTransform(bspline)
    return composite


def _demons(
    fixed_image: sitk.Image,
    moving_image: sitk.Image,
    initial: sitk.Transform,
    *,
    iterations: int,
    demons_sigma: float,
    shrink_factors: Sequence[int],
    smoothing_sigmas: Sequence[float],
) -> sitk.Transform:
    """Diffeomorphic demons, coarse to fine, started from the dense field of ``initial``.

    The field holds the whole transform (affine part included), so the result is one
    displacement-field transform. No histogram matching: our volumes share one modality
    and the ``[0, 1]`` normalisation.
    """
    _check_pyramid(shrink_factors, smoothing_sigmas)
    demons = sitk.DiffeomorphicDemonsRegistrationFilter()
    demons.SetNumberOfIterations(iterations)
    demons.SetStandardDeviations(demons_sigma)
    field = sitk.TransformToDisplacementField(
        initial,
        sitk.sitkVectorFloat64,
        fixed_image.GetSize(),
        fixed_image.GetOrigin(),
        fixed_image.GetSpacing(),
        fixed_image.GetDirection(),
    )
    for shrink, sigma in zip(shrink_factors, smoothing_sigmas):
        level_fixed = _level(fixed_image, shrink, sigma)
        level_field = sitk.Resample(field, level_fixed, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
        field = demons.Execute(level_fixed, _level(moving_image, shrink, sigma), level_field)
    field = sitk.Resample(field, fixed_image, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID())
    return sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))


def _level(image: sitk.Image, shrink: int, sigma: float) -> sitk.Image:
    """``image`` smoothed by ``sigma`` voxels and shrunk by ``shrink`` (same physical extent)."""
    if sigma > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [sigma * s for s in image.GetSpacing()])
    return sitk.Shrink(image, [int(shrink)] * 3) if shrink > 1 else image


def deformable_register(
    fixed: np.ndarray,
    moving: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    method: Literal["bspline", "demons"] = "bspline",
    initial_affine: bool = True,
    metric: Metric = "correlation",
    iterations: int = 20,
    affine_iterations: int = 50,
    mesh_size: Sequence[int] = (4, 4, 4),
    demons_sigma: float = 1.5,
    shrink_factors: Sequence[int] = (4, 2, 1),
    smoothing_sigmas: Sequence[float] = (2.0, 1.0, 0.0),
    sampling: float = 0.01,
    bins: int = 32,
    seed: int = 0,
) -> RegistrationResult:
    """Deformable registration of ``moving`` onto ``fixed``: B-spline FFD or demons.

    Both methods start from an affine registration (``initial_affine``, same pyramid and
    metric): the B-spline result is the composed transform ``affine(bspline(x))``, the
    demons field is initialised with the affine displacement and refined from there.

    Args:
        method: ``"bspline"`` (cubic B-spline free-form deformation, L-BFGS-B, one
            control grid for all levels) or ``"demons"`` (diffeomorphic demons on the
            intensities as they are; ``metric`` and ``sampling`` then only affect the
            affine start).
        iterations: B-spline optimiser or demons iterations per pyramid level.
        affine_iterations: iterations per level of the affine start.
        mesh_size: B-spline grid intervals along ``(H, W, D)``; per axis, so the thin
            depth axis of an OCT gets as many control points as the wide ones. ITK's
            B-spline metric costs grow with points x control points: (4, 4, 4) runs in
            seconds on 64^3, finer grids cost minutes.
        demons_sigma: Gaussian smoothing of the demons field (voxels of each level).
        shrink_factors, smoothing_sigmas: the pyramid, coarse to fine (voxels).
        sampling, bins, seed: metric sampling (as in :func:`affine_register`), Mattes
            histogram bins, random seed.

    Returns:
        :class:`RegistrationResult` with the pull-back displacement (module docstring).
    """
    _check_pair(fixed, moving, spacing_mm)
    if method not in ("bspline", "demons"):
        raise ConfigError(f"deformable registration method must be 'bspline' or 'demons', got {method!r}")
    if len(mesh_size) != 3 or min(mesh_size) < 1:
        raise ConfigError(f"B-spline mesh_size must be three positive interval counts (H, W, D), got {mesh_size}")
    started = time.perf_counter()
    fixed_image, moving_image = _to_sitk(fixed, VOXEL_UNITS), _to_sitk(moving, VOXEL_UNITS)
    settings = {
        "metric": metric,
        "bins": bins,
        "shrink_factors": shrink_factors,
        "smoothing_sigmas": smoothing_sigmas,
        "sampling": sampling,
        "seed": seed,
    }
    if initial_affine:
        initial = _affine_transform(
            fixed_image, moving_image, iterations=affine_iterations, max_step_voxels=1.0, **settings
        )
    else:
        initial = sitk.AffineTransform(3)
    if method == "bspline":
        transform = _bspline(fixed_image, moving_image, initial, iterations=iterations, mesh_size=mesh_size, **settings)
    else:
        transform = _demons(
            fixed_image,
            moving_image,
            initial,
            iterations=iterations,
            demons_sigma=demons_sigma,
            shrink_factors=shrink_factors,
            smoothing_sigmas=smoothing_sigmas,
        )
    return _result(transform, fixed, moving, spacing_mm, started)


def atlas_only(fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float]) -> RegistrationResult:
    """No registration: zero displacement, ``warped = moving`` (the "atlas only" baseline)."""
    _check_pair(fixed, moving, spacing_mm)
    if np.shape(fixed) != np.shape(moving):
        raise DataError(f"atlas only: fixed {np.shape(fixed)} and moving {np.shape(moving)} must share a grid")
    displacement = np.zeros((3, *np.shape(fixed)), dtype=np.float32)
    return RegistrationResult(
        displacement, np.asarray(moving, dtype=np.float32).copy(), sitk.Transform(3, sitk.sitkIdentity), 0.0
    )


CLASSICAL_METHODS: dict[str, Callable[..., RegistrationResult]] = {
    "atlas_only": atlas_only,
    "affine": affine_register,
    "bspline": partial(deformable_register, method="bspline"),
    "demons": partial(deformable_register, method="demons"),
}
"""Every baseline by name, each called as ``fn(fixed, moving, spacing_mm, **kwargs)``."""


def register(
    method: str, fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float], **kwargs: object
) -> RegistrationResult:
    """Run the baseline named ``method`` (a key of :data:`CLASSICAL_METHODS`)."""
    if method not in CLASSICAL_METHODS:
        raise ConfigError(f"unknown registration baseline {method!r}; choose from {sorted(CLASSICAL_METHODS)}")
    return CLASSICAL_METHODS[method](fixed, moving, spacing_mm, **kwargs)
