"""NIfTI volumes with spacing in the header and exact slow-axis positions in a sidecar.

Arrays are stored in our axis order (``[H, W, D]`` volumes, ``[W, D]`` en-face images) with
the voxel size in mm as the NIfTI zooms, so SimpleITK, ITK-SNAP and nibabel all report the
right spacing. Because a NIfTI header can only express uniform spacing, the position of
every slice along the last axis (mm) is also written to ``<name>.json`` next to the image;
readers fall back to the header when the sidecar is absent (as in the reference tree).
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from retina_data.errors import DataError
from retina_data.files import atomic_save, atomic_write_text, refuse_existing


@dataclass
class Image:
    """An array with its voxel size (mm) and the mm position of each index on its last axis."""

    array: np.ndarray
    spacing: tuple[float, ...]
    positions: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def sidecar_path(path: str | Path) -> Path:
    """``oct_flat_od.json`` for ``oct_flat_od.nii.gz``."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def write_nifti(path: str | Path, array: np.ndarray, spacing: tuple[float, ...],
                positions: np.ndarray | None = None, meta: dict[str, Any] | None = None,
                *, overwrite: bool = False) -> Path:
    """Write ``array`` with ``spacing`` (mm, one per axis) and last-axis ``positions`` (mm)."""
    path = refuse_existing(path, overwrite)
    array = np.asarray(array)
    if len(spacing) != array.ndim:
        raise ValueError(f"{path}: {len(spacing)} spacing values for a {array.ndim}-D array")
    affine = np.eye(4)
    for axis, size in enumerate(spacing):
        affine[axis, axis] = float(size)
    if positions is not None and len(positions):
        affine[array.ndim - 1, 3] = float(positions[0])
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.header.set_zooms(tuple(float(s) for s in spacing))
    atomic_save(path, lambda tmp: nib.save(image, str(tmp)), overwrite=overwrite)
    if positions is not None or meta:
        record = {"spacing_mm": [float(s) for s in spacing],
                  "positions_mm": None if positions is None else [float(p) for p in positions],
                  "meta": meta or {}}
        atomic_write_text(sidecar_path(path), json.dumps(record, indent=1) + "\n", overwrite=True)
    return path


def _stored_zooms(path: Path, image: nib.Nifti1Image, ndim: int) -> tuple[float, ...]:
    """Voxel sizes as stored: nibabel's loader silently turns 0 into 1 and negatives positive."""
    with nib.openers.ImageOpener(str(path)) as handle:
        header = type(image.header).from_fileobj(handle, check=False)
    return tuple(float(z) for z in header["pixdim"][1: ndim + 1])


def _load_quietly(path: Path) -> nib.Nifti1Image:
    """``nib.load`` without nibabel's log line about fixing 0 zooms (the stored ones are read anyway)."""
    log = logging.getLogger("nibabel.global")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return nib.load(str(path))
    finally:
        log.setLevel(level)


def read_nifti(path: str | Path) -> Image:
    """Read a NIfTI written by :func:`write_nifti` or by another tool.

    Missing, truncated or corrupt files raise :class:`DataError` naming the file. The
    spacing is the header's as stored, even where it is not positive (then left to
    :mod:`retina_data.validation` or :class:`~retina_data.eye.Eye` to reject).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        image = _load_quietly(path)
        array = np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(f"{path}: cannot read NIfTI (truncated or corrupt file?): {exc}") from exc
    spacing = _stored_zooms(path, image, array.ndim)
    origin = float(image.affine[array.ndim - 1, 3]) if array.ndim >= 1 else 0.0
    positions = origin + np.arange(array.shape[-1]) * spacing[-1]
    meta: dict[str, Any] = {}
    side = sidecar_path(path)
    if side.is_file():
        try:
            record = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{side}: cannot read sidecar JSON: {exc}") from exc
        meta = record.get("meta") or {}
        exact = record.get("spacing_mm")
        if exact is not None and np.allclose(exact, spacing, rtol=1e-5):
            spacing = tuple(float(s) for s in exact)  # the header holds float32 zooms only
        if record.get("positions_mm") is not None:
            positions = np.asarray(record["positions_mm"], dtype=np.float64)
            if positions.shape != (array.shape[-1],):
                raise DataError(
                    f"{side}: {positions.size} positions for {array.shape[-1]} slices in {path.name}"
                )
    return Image(array=array, spacing=spacing, positions=np.asarray(positions, dtype=np.float64), meta=meta)
