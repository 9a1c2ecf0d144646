"""The on-disk data set: one folder per subject and eye, compatible with the reference tree.

::

    DATA_DIR/
      dataset.yaml                          name, label names, provenance, layout version
      <subject>/<OD|OS>/
        oct_flat_<od|os>.nii.gz             OCT [H, W, D], float32 in [0, 1]
        oct_seg_flat_<od|os>.nii.gz         labels [H, W, D], uint8
        slo_<od|os>.nii.gz                  SLO en-face [W, D]
        oct_flat_subsmpl<k>_<od|os>.nii.gz  every k-th B-scan (and oct_seg_flat_subsmpl<k>_...)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from retina_data.config import dump_yaml, read_yaml
from retina_data.errors import ConfigError, DataError
from retina_data.eye import LATERALITIES, Eye
from retina_data.files import atomic_write_text, refuse_existing
from retina_data.identifiers import check_id
from retina_data.label_tables import write_label_tables
from retina_data.labels import FLUID_LABEL, label_names
from retina_data.nifti import read_nifti, write_nifti

LAYOUT_VERSION = 2
"""2: NIfTI files in an anatomical orientation (see :mod:`retina_data.nifti`) and label tables
beside every label volume; 1 had unoriented files, which are still read as before."""
DATASET_FILE = "dataset.yaml"


@dataclass(frozen=True)
class EyeFiles:
    """Paths of one eye's files at one B-scan subsampling factor."""

    oct: Path
    labels: Path
    slo: Path


def _infix(subsample: int) -> str:
    return "" if subsample == 1 else f"_subsmpl{subsample}"


def eye_files(data_dir: str | Path, subject: str, laterality: str, subsample: int = 1) -> EyeFiles:
    """Where the eye's OCT, labels and SLO live in the tree (``subject`` checked as an id)."""
    if laterality not in LATERALITIES:
        raise DataError(f"eye {subject}_{laterality}: laterality must be one of {LATERALITIES}, got {laterality!r}")
    folder = Path(data_dir) / check_id(subject, "subject id") / laterality
    lat = laterality.lower()
    return EyeFiles(
        oct=folder / f"oct_flat{_infix(subsample)}_{lat}.nii.gz",
        labels=folder / f"oct_seg_flat{_infix(subsample)}_{lat}.nii.gz",
        slo=folder / f"slo_{lat}.nii.gz",
    )


def write_dataset_info(
    data_dir: str | Path,
    name: str,
    *,
    with_fluid: bool = False,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``dataset.yaml`` (name, label names, provenance, layout version)."""
    info = {
        "name": name,
        "layout_version": LAYOUT_VERSION,
        "label_names": label_names(with_fluid),
        "provenance": provenance or {},
    }
    return atomic_write_text(Path(data_dir) / DATASET_FILE, dump_yaml(info), overwrite=overwrite)


def read_dataset_info(data_dir: str | Path) -> dict[str, Any]:
    """``dataset.yaml`` as a mapping; a tree without one gets the 13 default classes."""
    path = Path(data_dir) / DATASET_FILE
    if not path.is_file():
        return {
            "name": Path(data_dir).name,
            "layout_version": LAYOUT_VERSION,
            "label_names": label_names(),
            "provenance": {},
        }
    try:
        info = read_yaml(path)
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    if not isinstance(info, dict) or not isinstance(info.get("label_names"), list):
        raise DataError(f"{path}: expected a mapping with a 'label_names' list")
    return info


def _eye_targets(data_dir: str | Path, eye: Eye, subsample: int) -> tuple[EyeFiles, bool]:
    """The eye's files in the tree, and whether :func:`write_eye` writes its SLO (once, with the dense eye)."""
    files = eye_files(data_dir, eye.subject, eye.laterality, subsample)
    return files, eye.slo is not None and (subsample == 1 or not files.slo.exists())


def refuse_existing_eye(data_dir: str | Path, eye: Eye, *, subsample: int = 1, overwrite: bool = False) -> None:
    """Refuse (unless ``overwrite``) an eye whose files :func:`write_eye` would write exist already."""
    files, write_slo = _eye_targets(data_dir, eye, subsample)
    for path in [files.oct] + [files.labels] * (eye.labels is not None) + [files.slo] * write_slo:
        refuse_existing(path, overwrite)


def write_eye(data_dir: str | Path, eye: Eye, *, subsample: int = 1, overwrite: bool = False) -> list[Path]:
    """Write one eye's OCT, labels and SLO into the tree; returns the paths written.

    ``subsample`` names the files (``oct_flat_subsmpl<k>_...``); the eye itself must already
    hold the B-scans to store. The SLO is written once, with the dense (``subsample == 1``) eye.
    Every target is checked before any is written, so a refusal leaves the tree unchanged.
    """
    files, write_slo = _eye_targets(data_dir, eye, subsample)
    refuse_existing_eye(data_dir, eye, subsample=subsample, overwrite=overwrite)
    meta = {"subject": eye.subject, "laterality": eye.laterality, **eye.meta}
    written = [
        write_nifti(
            files.oct,
            eye.oct.astype(np.float32, copy=False),
            eye.spacing,
            eye.bscan_positions,
            meta,
            overwrite=overwrite,
        )
    ]
    if eye.labels is not None:
        written.append(
            write_nifti(
                files.labels,
                eye.labels.astype(np.uint8, copy=False),
                eye.spacing,
                eye.bscan_positions,
                overwrite=overwrite,
            )
        )
        with_fluid = bool(eye.labels.size) and int(eye.labels.max()) >= FLUID_LABEL
        written += write_label_tables(files.labels.parent, label_names(with_fluid))
    if write_slo and eye.slo is not None and eye.slo_positions is not None:
        slo_spacing = (eye.spacing[1], _uniform_step(eye.slo_positions, eye.spacing[2]))
        written.append(
            write_nifti(
                files.slo, eye.slo.astype(np.float32, copy=False), slo_spacing, eye.slo_positions, overwrite=overwrite
            )
        )
    return written


def _uniform_step(positions: np.ndarray, fallback: float) -> float:
    return float(np.median(np.diff(positions))) if positions.size > 1 else fallback


def check_values(path: str | Path, array: np.ndarray, *, labels: bool = False) -> None:
    """Refuse NaN/Inf values, and label values outside ``0..FLUID_LABEL``, naming ``path``."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise DataError(
            f"{path}: holds {int(np.isnan(array).sum())} NaN and {int(np.isinf(array).sum())} Inf "
            "values; expected finite values"
        )
    if labels and array.size:
        low, high = array.min(), array.max()
        fractional = np.issubdtype(array.dtype, np.floating) and not np.array_equal(array, np.round(array))
        if fractional:
            example = array[array != np.round(array)].flat[0]
            raise DataError(
                f"{path}: label values that are not whole numbers (e.g. {example}); expected integers 0..{FLUID_LABEL}"
            )
        if low < 0 or high > FLUID_LABEL:
            raise DataError(f"{path}: label values {low}..{high}; expected integers 0..{FLUID_LABEL}")


TreeLayout = Literal["retina_data", "reference"]


def _from_reference_layout(oct_volume: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, ...]]:
    """A reference tree's OCT ``[W, H, D]`` (uint8 0..255 as stored) as ``[H, W, D]`` in [0, 1],
    with its spacing reordered to ``(dH, dW, dD)``."""
    volume = oct_volume.transpose(1, 0, 2)
    if volume.dtype == np.uint8:
        volume = volume.astype(np.float32) / np.float32(255.0)
    return volume, (spacing[1], spacing[0], spacing[2])


def read_eye(
    data_dir: str | Path, subject: str, laterality: str, subsample: int = 1, layout: TreeLayout = "retina_data"
) -> Eye:
    """Read one eye; labels and SLO are optional, the OCT is required.

    ``layout="reference"`` reads a tree written by the reference code, whose volumes are
    ``[W, H, D]`` as nibabel returns them and whose OCT is uint8 0..255: they are transposed
    to ``[H, W, D]`` and the OCT divided by 255, as the reference evaluation does. Our own
    trees (``"retina_data"``) are read as stored.
    """
    if laterality not in LATERALITIES:
        raise DataError(f"laterality must be one of {LATERALITIES}, got {laterality!r}")
    files = eye_files(data_dir, subject, laterality, subsample)
    if not files.oct.is_file():
        raise DataError(f"{files.oct}: OCT volume not found for eye {subject}_{laterality}")
    oct_image = read_nifti(files.oct)
    if oct_image.array.ndim != 3:
        raise DataError(f"{files.oct}: expected a 3-D OCT volume [H, W, D], got shape {oct_image.array.shape}")
    check_values(files.oct, oct_image.array)
    if not all(np.isfinite(step) and step > 0 for step in oct_image.spacing):
        raise DataError(
            f"{files.oct}: voxel spacing {tuple(oct_image.spacing)} mm in the header must be positive and finite"
        )
    oct_volume, spacing = oct_image.array, oct_image.spacing
    if layout == "reference":
        oct_volume, spacing = _from_reference_layout(oct_volume, spacing)
    labels = read_nifti(files.labels).array if files.labels.is_file() else None
    if labels is not None:
        check_values(files.labels, labels, labels=True)
        if layout == "reference":
            labels = labels.transpose(1, 0, 2).astype(np.uint8)
    slo = slo_positions = None
    if files.slo.is_file():
        slo_image = read_nifti(files.slo)
        slo, slo_positions = slo_image.array, slo_image.positions
        check_values(files.slo, slo)
        if slo.ndim == 3 and slo.shape[-1] == 1:
            slo = slo[..., 0]
    try:
        return Eye(
            oct=oct_volume,
            spacing=spacing,
            subject=subject,
            laterality=laterality,
            labels=labels,
            slo=slo,
            bscan_positions=oct_image.positions,
            slo_positions=slo_positions,
            meta={k: v for k, v in oct_image.meta.items() if k not in ("subject", "laterality")},
        )
    except DataError as exc:
        raise DataError(f"{files.oct.parent}: {exc}") from exc


def list_eyes(data_dir: str | Path, subsample: int = 1) -> list[tuple[str, str]]:
    """``(subject, laterality)`` of every eye in the tree that has an OCT at ``subsample``."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    eyes = []
    for subject_dir in sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for laterality in LATERALITIES:
            if eye_files(data_dir, subject_dir.name, laterality, subsample).oct.is_file():
                eyes.append((subject_dir.name, laterality))
    return eyes


def read_dataset(
    data_dir: str | Path, subjects: list[str] | None = None, subsample: int = 1, layout: TreeLayout = "retina_data"
) -> list[Eye]:
    """Every eye of the given subjects (all subjects when ``None``), in subject order
    (``layout``: see :func:`read_eye`).

    A subject named in ``subjects`` with no eye on disk raises :class:`DataError`.
    """
    available = list_eyes(data_dir, subsample)
    if not available:
        raise DataError(
            f"{data_dir}: no eyes found (expected <subject>/<OD|OS>/oct_flat{_infix(subsample)}_<od|os>.nii.gz)"
        )
    if subjects is not None:
        on_disk = {subject for subject, _ in available}
        missing = [s for s in subjects if s not in on_disk]
        if missing:
            raise DataError(f"{data_dir}: subjects not found on disk: {', '.join(missing)}")
        wanted = set(subjects)
        order = {s: i for i, s in enumerate(subjects)}
        available = sorted((e for e in available if e[0] in wanted), key=lambda e: (order[e[0]], e[1]))
    return [read_eye(data_dir, subject, laterality, subsample, layout) for subject, laterality in available]
