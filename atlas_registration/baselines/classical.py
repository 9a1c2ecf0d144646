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
from typing import Literal

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from retina_data.errors import ConfigError, DataError


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
        transform, sitk.sitkVectorFloat64, reference.GetSize(), reference.GetOrigin(),
        reference.GetSpacing(), reference.GetDirection(),
    )
    vectors = sitk.GetArrayFromImage(field)  # [H, W, D, 3] with components (dD, dW, dH)
    return np.ascontiguousarray(np.moveaxis(vectors[..., ::-1], -1, 0), dtype=np.float32)


def _check_pair(fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float]) -> None:
    if np.ndim(fixed) != 3 or np.ndim(moving) != 3:
        raise DataError(f"registration needs two [H, W, D] volumes, got {np.shape(fixed)} and {np.shape(moving)}")
    if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
        raise DataError(f"registration spacing must be 3 positive values (dH, dW, dD) in mm, got {spacing_mm}")


def sample_grid(displacement_mm: np.ndarray, spacing_mm: Sequence[float], start: int,
                stop: int) -> np.ndarray:
    """Voxel coordinates ``[3, H, W, stop-start]`` of ``x + u(x)`` for B-scans ``start:stop``."""
    _, height, width, _ = displacement_mm.shape
    index = np.meshgrid(np.arange(height), np.arange(width), np.arange(start, stop), indexing="ij")
    scale = np.asarray(spacing_mm, dtype=np.float64).reshape(3, 1, 1, 1)
    return np.stack(index).astype(np.float64) + displacement_mm[:, :, :, start:stop] / scale


def _warp(volume: np.ndarray, displacement_mm: np.ndarray, spacing_mm: Sequence[float], order: int,
          chunk_size: int) -> np.ndarray:
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


def warp_intensity(intensity: np.ndarray, displacement_mm: np.ndarray, spacing_mm: Sequence[float],
                   chunk_size: int = 32) -> np.ndarray:
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


def warp_labels(labels: np.ndarray, displacement_mm: np.ndarray, spacing_mm: Sequence[float],
                chunk_size: int = 32) -> np.ndarray:
    """``labels(x + u(x))`` by nearest-neighbour lookup (labels stay labels).

    Args and chunking as :func:`warp_intensity`; returns ``[H, W, D]`` in the input dtype.
    """
    return _warp(np.asarray(labels), displacement_mm, spacing_mm, 0, chunk_size)


def _result(transform: sitk.Transform, fixed_image: sitk.Image, moving: np.ndarray,
            spacing_mm: Sequence[float], started: float) -> RegistrationResult:
    displacement = _field_from_transform(transform, fixed_image)
    warped = warp_intensity(moving, displacement, spacing_mm)
    return RegistrationResult(displacement, warped, transform, time.perf_counter() - started)


def _method(metric: str, registration: sitk.ImageRegistrationMethod, bins: int) -> None:
    if metric == "mattes":
        registration.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    elif metric == "mean_squares":
        registration.SetMetricAsMeanSquares()
    elif metric == "correlation":
        registration.SetMetricAsCorrelation()
    else:
        raise ConfigError(f"registration metric must be 'mattes', 'mean_squares' or 'correlation', got {metric!r}")


def _pyramid(registration: sitk.ImageRegistrationMethod, shrink_factors: Sequence[int],
             smoothing_sigmas: Sequence[float], sampling: float, seed: int) -> None:
    if len(shrink_factors) != len(smoothing_sigmas):
        raise ConfigError(
            f"registration pyramid: {len(shrink_factors)} shrink factors but {len(smoothing_sigmas)} smoothing sigmas"
        )
    registration.SetShrinkFactorsPerLevel(list(shrink_factors))
    registration.SetSmoothingSigmasPerLevel(list(smoothing_sigmas))
    registration.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    registration.SetMetricSamplingStrategy(registration.RANDOM)
    registration.SetMetricSamplingPercentage(float(sampling), int(seed))
    registration.SetInterpolator(sitk.sitkLinear)


def _affine_transform(fixed_image: sitk.Image, moving_image: sitk.Image, *, metric: str,
                      iterations: int, max_step_voxels: float, shrink_factors: Sequence[int],
                      smoothing_sigmas: Sequence[float], sampling: float, bins: int,
                      seed: int) -> sitk.Transform:
    initial = sitk.CenteredTransformInitializer(
        fixed_image, moving_image, sitk.AffineTransform(3), sitk.CenteredTransformInitializerFilter.GEOMETRY,
    )
    registration = sitk.ImageRegistrationMethod()
    _method(metric, registration, bins)
    _pyramid(registration, shrink_factors, smoothing_sigmas, sampling, seed)
    registration.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, relaxationFactor=0.7,
        gradientMagnitudeTolerance=1e-8, estimateLearningRate=registration.Once,
        maximumStepSizeInPhysicalUnits=max_step_voxels * min(fixed_image.GetSpacing()),
    )
    registration.SetOptimizerScalesFromPhysicalShift()
    registration.SetInitialTransform(initial, inPlace=False)
    return registration.Execute(fixed_image, moving_image)


def affine_register(fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float], *,
                    metric: Literal["mattes", "mean_squares", "correlation"] = "mean_squares",
                    iterations: int = 100, max_step_voxels: float = 1.0,
                    shrink_factors: Sequence[int] = (4, 2, 1),
                    smoothing_sigmas: Sequence[float] = (2.0, 1.0, 0.0),
                    sampling: float = 0.2, bins: int = 32, seed: int = 0) -> RegistrationResult:
    """Affine registration of ``moving`` onto ``fixed`` (both ``[H, W, D]``, one spacing).

    Multi-resolution (``shrink_factors`` / ``smoothing_sigmas`` in voxels per level), a
    regular-step gradient descent (parameter scales from the physical shift, steps of at
    most ``max_step_voxels`` of the finest voxel size), and a
    random ``sampling`` fraction of the voxels per metric evaluation. Our volumes are
    flattened and normalised to ``[0, 1]``, so mean squares is the default metric.

    Returns:
        :class:`RegistrationResult` with the pull-back displacement (module docstring).
    """
    _check_pair(fixed, moving, spacing_mm)
    started = time.perf_counter()
    fixed_image, moving_image = _to_sitk(fixed, spacing_mm), _to_sitk(moving, spacing_mm)
    transform = _affine_transform(
        fixed_image, moving_image, metric=metric, iterations=iterations, max_step_voxels=max_step_voxels,
        shrink_factors=shrink_factors, smoothing_sigmas=smoothing_sigmas, sampling=sampling, bins=bins,
        seed=seed,
    )
    return _result(transform, fixed_image, moving, spacing_mm, started)


def _bspline(fixed_image: sitk.Image, moving_image: sitk.Image, initial: sitk.Transform, *,
             metric: str, iterations: int, mesh_size_mm: float, shrink_factors: Sequence[int],
             smoothing_sigmas: Sequence[float], sampling: float, bins: int, seed: int) -> sitk.Transform:
    extent = [n * s for n, s in zip(fixed_image.GetSize(), fixed_image.GetSpacing())]
    mesh = [max(int(round(e / mesh_size_mm)), 1) for e in extent]
    bspline = sitk.BSplineTransformInitializer(fixed_image, mesh, order=3)
    registration = sitk.ImageRegistrationMethod()
    _method(metric, registration, bins)
    _pyramid(registration, shrink_factors, smoothing_sigmas, sampling, seed)
    registration.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5, numberOfIterations=iterations, maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=4 * iterations,
    )
    registration.SetMovingInitialTransform(initial)
    registration.SetInitialTransform(bspline, inPlace=True)
    registration.Execute(fixed_image, moving_image)
    composite = sitk.CompositeTransform(initial)
    composite.AddTransform(bspline)
    return composite


def _demons(fixed_image: sitk.Image, moving_image: sitk.Image, initial: sitk.Transform, *,
            iterations: int, demons_sigma: float, shrink_factors: Sequence[int],
            smoothing_sigmas: Sequence[float]) -> sitk.Transform:
    """Diffeomorphic demons, coarse to fine, started from the dense field of ``initial``.

    The field holds the whole transform (affine part included), so the result is one
    displacement-field transform. No histogram matching: our volumes share one modality
    and the ``[0, 1]`` normalisation.
    """
    if len(shrink_factors) != len(smoothing_sigmas):
        raise ConfigError(
            f"registration pyramid: {len(shrink_factors)} shrink factors but {len(smoothing_sigmas)} smoothing sigmas"
        )
    demons = sitk.DiffeomorphicDemonsRegistrationFilter()
    demons.SetNumberOfIterations(iterations)
    demons.SetStandardDeviations(demons_sigma)
    field = sitk.TransformToDisplacementField(
        initial, sitk.sitkVectorFloat64, fixed_image.GetSize(), fixed_image.GetOrigin(),
        fixed_image.GetSpacing(), fixed_image.GetDirection(),
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


def deformable_register(fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float], *,
                        method: Literal["bspline", "demons"] = "bspline", initial_affine: bool = True,
                        metric: Literal["mattes", "mean_squares", "correlation"] = "mean_squares",
                        iterations: int = 50, mesh_size_mm: float | None = None,
                        demons_sigma: float = 1.5, shrink_factors: Sequence[int] = (4, 2, 1),
                        smoothing_sigmas: Sequence[float] = (2.0, 1.0, 0.0), sampling: float = 0.2,
                        bins: int = 32, seed: int = 0) -> RegistrationResult:
    """Deformable registration of ``moving`` onto ``fixed``: B-spline FFD or demons.

    Both methods start from an affine registration (``initial_affine``, same pyramid and
    metric): the B-spline result is the composed transform ``affine(bspline(x))``, the
    demons field is initialised with the affine displacement and refined from there.

    Args:
        method: ``"bspline"`` (cubic B-spline free-form deformation, L-BFGS-B) or
            ``"demons"`` (diffeomorphic demons on the intensities as they are).
        iterations: per pyramid level (affine, B-spline optimiser or demons iterations).
        mesh_size_mm: B-spline control-point spacing in mm; default an eighth of the
            largest physical extent of the volume.
        demons_sigma: Gaussian smoothing of the demons field (voxels of each level).
        shrink_factors, smoothing_sigmas: the pyramid, coarse to fine (voxels).
        sampling, bins, seed: metric sampling fraction, Mattes histogram bins, random seed.

    Returns:
        :class:`RegistrationResult` with the pull-back displacement (module docstring).
    """
    _check_pair(fixed, moving, spacing_mm)
    started = time.perf_counter()
    fixed_image, moving_image = _to_sitk(fixed, spacing_mm), _to_sitk(moving, spacing_mm)
    pyramid = dict(shrink_factors=shrink_factors, smoothing_sigmas=smoothing_sigmas)
    if initial_affine:
        initial = _affine_transform(fixed_image, moving_image, metric=metric, iterations=iterations,
                                    max_step_voxels=1.0, sampling=sampling, bins=bins, seed=seed, **pyramid)
    else:
        initial = sitk.AffineTransform(3)
    if method == "bspline":
        extent = max(n * s for n, s in zip(fixed_image.GetSize(), fixed_image.GetSpacing()))
        transform = _bspline(fixed_image, moving_image, initial, metric=metric, iterations=iterations,
                             mesh_size_mm=mesh_size_mm or extent / 8.0, sampling=sampling, bins=bins,
                             seed=seed, **pyramid)
    elif method == "demons":
        transform = _demons(fixed_image, moving_image, initial, iterations=iterations,
                            demons_sigma=demons_sigma, **pyramid)
    else:
        raise ConfigError(f"deformable registration method must be 'bspline' or 'demons', got {method!r}")
    return _result(transform, fixed_image, moving, spacing_mm, started)


def atlas_only(fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float]) -> RegistrationResult:
    """No registration: zero displacement, ``warped = moving`` (the "atlas only" baseline)."""
    _check_pair(fixed, moving, spacing_mm)
    if np.shape(fixed) != np.shape(moving):
        raise DataError(f"atlas only: fixed {np.shape(fixed)} and moving {np.shape(moving)} must share a grid")
    displacement = np.zeros((3, *np.shape(fixed)), dtype=np.float32)
    return RegistrationResult(displacement, np.asarray(moving, dtype=np.float32).copy(),
                              sitk.Transform(3, sitk.sitkIdentity), 0.0)


CLASSICAL_METHODS: dict[str, Callable[..., RegistrationResult]] = {
    "atlas_only": atlas_only,
    "affine": affine_register,
    "bspline": partial(deformable_register, method="bspline"),
    "demons": partial(deformable_register, method="demons"),
}
"""Every baseline by name, each called as ``fn(fixed, moving, spacing_mm, **kwargs)``."""


def register(method: str, fixed: np.ndarray, moving: np.ndarray, spacing_mm: Sequence[float],
             **kwargs: object) -> RegistrationResult:
    """Run the baseline named ``method`` (a key of :data:`CLASSICAL_METHODS`)."""
    if method not in CLASSICAL_METHODS:
        raise ConfigError(f"unknown registration baseline {method!r}; choose from {sorted(CLASSICAL_METHODS)}")
    return CLASSICAL_METHODS[method](fixed, moving, spacing_mm, **kwargs)
