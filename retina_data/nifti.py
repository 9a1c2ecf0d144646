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
    """``nib.load`` without nibabel's log lines about header fields it fixes or rejects (the
    stored zooms are read anyway; a rejected header becomes our one-line error)."""
    log = logging.getLogger("nibabel.global")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        return nib.load(str(path))
    finally:
        log.setLevel(level)


DEFLATE_MAX_RATIO = 1032
"""No deflate stream expands by more than about 1032:1, so a .nii.gz of ``n`` bytes cannot
hold more than ``1032 n`` bytes of image."""


def _check_declared_size(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse a header that declares more data than the file can hold, before reading it
    (a corrupt dimension would otherwise allocate gigabytes or decompress for minutes)."""
    header = image.header
    declared = int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=np.float64)
                                                   * header.get_data_dtype().itemsize)
    stored = path.stat().st_size
    if path.name.endswith(".gz"):
        with path.open("rb") as handle:
            handle.seek(-4, 2)
            isize = int.from_bytes(handle.read(4), "little")  # uncompressed size mod 2**32
        possible = DEFLATE_MAX_RATIO * stored if declared >= 2 ** 32 else isize
    else:
        possible = stored
    if declared > possible:
        raise DataError(f"{path}: header declares shape {tuple(header.get_data_shape())} of "
                        f"{header.get_data_dtype()} ({declared:,} bytes) but the file holds at most "
                        f"{possible:,} (truncated or corrupt file?)")


def _numbers(value: object) -> np.ndarray | None:
    """A JSON list of finite numbers as float64, else ``None``."""
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    numbers = np.asarray(value, dtype=np.float64)
    return numbers if np.all(np.isfinite(numbers)) else None


def _read_sidecar(side: Path) -> tuple[dict[str, Any], tuple[float, ...] | None, np.ndarray | None]:
    """``(meta, spacing_mm, positions_mm)`` of a sidecar; malformed content is a :class:`DataError`."""
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{side}: cannot read sidecar JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise DataError(f"{side}: expected a JSON object with spacing_mm, positions_mm and meta")
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError(f"{side}: meta must be a JSON object, got {type(meta).__name__}")
    spacing = positions = None
    for key in ("spacing_mm", "positions_mm"):
        if record.get(key) is None:
            continue
        numbers = _numbers(record[key])
        if numbers is None:
            raise DataError(f"{side}: {key} must be a list of finite numbers")
        if key == "spacing_mm":
            spacing = tuple(float(v) for v in numbers)
        else:
            positions = numbers
    return meta, spacing, positions


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
        _check_declared_size(path, image)
        array = np.asanyarray(image.dataobj)
    except (OSError, EOFError, ValueError, OverflowError, MemoryError, zlib.error,
            nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError) as exc:
        raise DataError(f"{path}: cannot read NIfTI (truncated or corrupt file?): {exc}") from exc
    if array.dtype.names is not None or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{path}: {array.dtype} voxels (an RGB or other multi-component image?); "
                        "expected one grey value per voxel")
    if array.ndim == 0:
        raise DataError(f"{path}: a NIfTI without dimensions; expected a 2-D or 3-D image")
    spacing = _stored_zooms(path, image, array.ndim)
    origin = float(image.affine[array.ndim - 1, 3]) if array.ndim >= 1 else 0.0
    positions = origin + np.arange(array.shape[-1]) * spacing[-1]
    meta: dict[str, Any] = {}
    side = sidecar_path(path)
    if side.is_file():
        meta, exact, listed = _read_sidecar(side)
        if exact is not None and len(exact) == len(spacing) and np.allclose(exact, spacing, rtol=1e-5):
            spacing = tuple(exact)  # the header holds float32 zooms only
        if listed is not None:
            positions = listed
            if array.ndim == 0 or positions.shape != (array.shape[-1],):
                slices = array.shape[-1] if array.ndim else 0
                raise DataError(f"{side}: {positions.size} positions for {slices} slices in {path.name}")
    return Image(array=array, spacing=spacing, positions=np.asarray(positions, dtype=np.float64), meta=meta)
