"""What a run writes besides metrics: atlas volumes at any resolution, per-eye volumes, figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates, regular_axes
from atlas_registration.datasets.eyes import from_atlas_orientation
from atlas_registration.experiments.eye_registration import EyeRegistration
from atlas_registration.routines.prediction import inverse_displacement, predict_on_grid, sample_volume
from atlas_registration.utilities.figures import plot_atlas_slices, plot_jacobian, plot_registration
from atlas_registration.utilities.jacobian import jacobian_determinant
from atlas_registration.utilities.median_atlas import ATLAS_INTENSITY_FILE, ATLAS_LABELS_FILE
from retina_data.eye import Eye
from retina_data.nifti import write_nifti


def write_atlas_volumes(atlas: AtlasINR, shape: Sequence[int], extent_mm: Sequence[float], out_dir: Path,
                        chunk: int, class_names: Sequence[str] | None = None, figure: bool = True) -> list[Path]:
    """The atlas INR rendered on a regular ``shape`` grid over the fixed extent, as NIfTI (+ a figure)."""
    prediction = predict_on_grid(atlas, grid_coordinates(regular_axes(shape)), None, chunk)
    spacing = tuple(e / max(n - 1, 1) for e, n in zip(extent_mm, shape))
    meta = {"atlas": "INR", "extent_mm": list(extent_mm)}
    written = [write_nifti(out_dir / ATLAS_INTENSITY_FILE, prediction.intensity, spacing, meta=meta, overwrite=True),
               write_nifti(out_dir / ATLAS_LABELS_FILE, prediction.labels, spacing, meta=meta, overwrite=True)]
    if figure:
        written.append(plot_atlas_slices(prediction.intensity, prediction.labels, spacing, out_dir / "atlas.png",
                                         class_names=class_names, overwrite=True))
    return written


def eye_in_atlas_space(registration: EyeRegistration, eye: Eye, atlas_shape: Sequence[int],
                       extent_mm: Sequence[float], chunk: int, device: torch.device
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The eye's intensities and labels warped onto the atlas grid (inverse of an INR registration).

    Returns ``(intensity [h, w, d] float32, labels [h, w, d] uint8)`` on the regular atlas grid.
    """
    coords = grid_coordinates(regular_axes(atlas_shape))
    source = coords + inverse_displacement(registration.displacement_fn, coords, chunk=chunk, device=device)
    axes = eye_axes(eye, extent_mm)
    return sample_volume(eye.oct, source, axes), sample_volume(eye.labels, source, axes, nearest=True)


def write_eye_outputs(registration: EyeRegistration, eye: Eye, out_dir: Path, flip_os: bool,
                      atlas_shape: Sequence[int], extent_mm: Sequence[float], chunk: int,
                      before_labels: np.ndarray, device: torch.device, figures: bool = True) -> list[Path]:
    """Per-eye volumes of a registration (in the eye's own orientation) and its figures.

    Writes ``atlas_labels_in_eye``, ``atlas_in_eye``, ``displacement_mm`` ([H, W, D, 3],
    component order dH, dW, dD) and, for an INR registration, ``eye_in_atlas`` /
    ``eye_labels_in_atlas`` on the atlas grid (atlas orientation).
    """
    def back(volume: np.ndarray) -> np.ndarray:
        return from_atlas_orientation(volume, eye.laterality, flip_os)

    displacement = np.moveaxis(registration.displacement_mm, 0, -1)
    if flip_os and eye.laterality == "OS":
        displacement = displacement * np.array([1.0, -1.0, 1.0], dtype=np.float32)
    written = [
        write_nifti(out_dir / "atlas_labels_in_eye.nii.gz", back(registration.labels), eye.spacing,
                    eye.bscan_positions, overwrite=True),
        write_nifti(out_dir / "atlas_in_eye.nii.gz", back(registration.intensity), eye.spacing,
                    eye.bscan_positions, overwrite=True),
        write_nifti(out_dir / "displacement_mm.nii.gz", back(displacement), (*eye.spacing, 1.0), overwrite=True),
    ]
    if registration.displacement_fn is not None:
        intensity, labels = eye_in_atlas_space(registration, eye, atlas_shape, extent_mm, chunk, device)
        spacing = tuple(e / max(n - 1, 1) for e, n in zip(extent_mm, atlas_shape))
        written += [write_nifti(out_dir / "eye_in_atlas.nii.gz", intensity, spacing, overwrite=True),
                    write_nifti(out_dir / "eye_labels_in_atlas.nii.gz", labels, spacing, overwrite=True)]
    if figures:
        written.append(plot_registration(eye.oct, eye.labels, registration.labels, before_labels,
                                         out_dir / "registration.png", spacing=eye.spacing, overwrite=True))
        det = jacobian_determinant(registration.displacement_mm, eye.spacing)
        written.append(plot_jacobian(det, out_dir / "jacobian.png", spacing=eye.spacing, overwrite=True))
    return written
