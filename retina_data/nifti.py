"""NIfTI volumes with an anatomical orientation, spacing in the header and exact slow-axis positions in a sidecar.

Arrays are stored in our axis order (``[H, W, D]`` volumes, ``[W, D]`` en-face images,
``[H, W, D, C]`` vector fields) with the voxel size in mm as the NIfTI zooms and a real
anatomical orientation in both the qform and the sform (code 1, scanner):

- ``H`` (depth along the A-scan, from the vitreous into the retina) runs anterior to
  posterior (P),
- ``W`` (along the B-scan, left to right on a fundus picture seen from the front) runs to
  the patient's left (L),
- ``D`` (B-scan index, top to bottom of the fundus picture) runs superior to inferior (I).

Axis codes (nibabel's ``aff2axcodes``) are therefore ``('P', 'L', 'I')``, and viewers in
radiological convention (ITK-SNAP, 3D Slicer) show each B-scan in the axial view as the
scanner software shows it (vitreous at the top) and the en-face plane in the coronal view
as a fundus picture (superior at the top, the patient's right on the screen's left).
En-face images ``[W, D]`` are 2-D, which ITK keeps in its x-y plane: their codes are
``('L', 'P')``, the slow axis stored along y, so a viewer shows them as a fundus too.

Because a NIfTI header can only express uniform spacing, the position of every slice along
the last axis (mm) is also written to ``<name>.json`` next to the image; readers fall back
to the header when the sidecar is absent (as in the reference tree).

Reading: our orientation is read as is; a file whose affine is a positive diagonal (no
orientation: our files before layout 2, the reference tree, many tools' defaults) is read
in its array order, as before; any other axis-aligned orientation is reoriented to ours
(axes permuted and flipped, the spacing with them) with a note in ``meta``; an oblique
affine, or one whose axes cannot be mapped onto ours, is refused.
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


AXIS_DIRECTIONS = {"H": (0.0, -1.0, 0.0), "W": (-1.0, 0.0, 0.0), "D": (0.0, 0.0, -1.0)}
"""RAS direction of each of our axes in a volume: H posterior, W to the patient's left, D inferior."""
EN_FACE_DIRECTIONS = {"W": (-1.0, 0.0, 0.0), "D": (0.0, -1.0, 0.0), "H": (0.0, 0.0, -1.0)}
"""RAS directions of an en-face image ``[W, D]``: ITK keeps 2-D images in its x-y plane, so the
slow axis is stored along y (codes ``('L', 'P')``); viewers then show it as a fundus picture
with the first B-scan (superior) at the top."""
SPATIAL_AXES = {2: "WD", 3: "HWD", 4: "HWD"}
"""Our axes of a 2-D (en-face), 3-D (volume) and 4-D (vector field, components last) array."""
REORIENTED = "reoriented_from"


def _axes_of(ndim: int, path: Path) -> str:
    if ndim not in SPATIAL_AXES:
        raise ValueError(f"{path}: cannot store a {ndim}-D array (expected 2-D [W, D], 3-D [H, W, D] or 4-D)")
    return SPATIAL_AXES[ndim]


def oriented_affine(spacing: tuple[float, ...], ndim: int, slow_origin: float = 0.0) -> np.ndarray:
    """The RAS affine of our axes for an array of ``ndim`` dimensions: columns are the axis
    directions times the spacing; index 0 of ``D`` lies at ``slow_origin`` mm along it."""
    axes = _axes_of(ndim, Path("array"))
    directions = _directions(ndim)
    affine = np.eye(4)
    unused = [a for a in "HWD" if a not in axes]
    for column, axis in enumerate(axes + "".join(unused)):
        size = float(spacing[column]) if column < len(axes) else 1.0
        affine[:3, column] = np.asarray(directions[axis]) * size
    affine[:3, 3] = np.asarray(directions["D"]) * slow_origin
    return affine


def _directions(ndim: int) -> dict[str, tuple[float, float, float]]:
    return EN_FACE_DIRECTIONS if ndim == 2 else AXIS_DIRECTIONS


def our_axcodes(ndim: int) -> tuple[str, ...]:
    """``('P', 'L', 'I')`` for volumes, ``('L', 'P')`` for en-face images."""
    return tuple(nib.aff2axcodes(oriented_affine((1.0,) * 4, ndim)))[: len(_axes_of(ndim, Path("array")))]


def write_nifti(
    path: str | Path,
    array: np.ndarray,
    spacing: tuple[float, ...],
    positions: np.ndarray | None = None,
    meta: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``array`` (our axes, see the module doc) with ``spacing`` (mm, one per axis) and
    last-spatial-axis ``positions`` (mm) in our anatomical orientation."""
    path = refuse_existing(path, overwrite)
    array = np.asarray(array)
    if len(spacing) != array.ndim:
        raise ValueError(f"{path}: {len(spacing)} spacing values for a {array.ndim}-D array")
    _axes_of(array.ndim, path)
    origin = float(positions[0]) if positions is not None and len(positions) else 0.0
    affine = oriented_affine(spacing, array.ndim, origin)
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    image.header.set_zooms(tuple(float(s) for s in spacing))
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    atomic_save(path, lambda tmp: nib.save(image, str(tmp)), overwrite=overwrite)
    if positions is not None or meta:
        record = {
            "spacing_mm": [float(s) for s in spacing],
            "positions_mm": None if positions is None else [float(p) for p in positions],
            "meta": meta or {},
        }
        atomic_write_text(sidecar_path(path), json.dumps(record, indent=1) + "\n", overwrite=True)
    return path


def _to_our_axes(
    path: Path, array: np.ndarray, spacing: tuple[float, ...], affine: np.ndarray
) -> tuple[np.ndarray, tuple[float, ...], float, str | None]:
    """``(array, spacing, slow origin, reoriented_from)`` of a file in our axis order."""
    ndim = array.ndim
    if ndim not in SPATIAL_AXES:
        return array, spacing, float(affine[min(ndim, 3) - 1, 3]), None
    spatial = len(SPATIAL_AXES[ndim])
    linear = affine[:3, :3]
    codes = tuple(nib.aff2axcodes(affine))[:spatial]
    ours = our_axcodes(ndim)
    slow = np.asarray(_directions(ndim)["D"])
    if codes == ours:
        return array, spacing, float(affine[:3, 3] @ slow), None
    off_diagonal = linear - np.diag(np.diag(linear))
    if np.allclose(off_diagonal, 0.0) and np.all(np.diag(linear)[:spatial] > 0):
        return array, spacing, float(affine[spatial - 1, 3]), None  # no orientation: array order
    columns = linear[:, :spatial]
    norms = np.linalg.norm(columns, axis=0)
    if np.any(norms == 0) or np.any(np.max(np.abs(columns), axis=0) / norms < 1 - 1e-4):
        raise DataError(
            f"{path}: oblique orientation {''.join(codes)} (the image axes are rotated against "
            "the anatomical axes); expected an axis-aligned image"
        )
    current = nib.orientations.io_orientation(affine)[:spatial]
    wanted = nib.orientations.axcodes2ornt(ours)
    if sorted(current[:, 0]) != sorted(wanted[:, 0]):
        raise DataError(
            f"{path}: orientation {''.join(codes)} cannot be mapped onto our axes "
            f"{''.join(ours)} ({SPATIAL_AXES[ndim]}); expected a file of the same anatomy"
        )
    transform = nib.orientations.ornt_transform(current, wanted)
    oriented = (
        nib.orientations.apply_orientation(array, transform)
        if ndim == spatial
        else np.stack(
            [nib.orientations.apply_orientation(array[..., c], transform) for c in range(array.shape[-1])], axis=-1
        )
    )
    new_spacing = list(spacing)
    for source, (target, _) in enumerate(transform):
        new_spacing[int(target)] = spacing[source]
    full, shape = transform, array.shape[:spatial]
    if spatial == 2:  # the affine's third column belongs to no array axis
        full, shape = np.vstack([transform, [2.0, 1.0]]), (*shape, 1)
    new_affine = affine @ nib.orientations.inv_ornt_aff(full, shape)
    origin = float(new_affine[:3, 3] @ slow)
    return np.ascontiguousarray(oriented), tuple(new_spacing), origin, "".join(codes)


def _stored_zooms(path: Path, image: nib.Nifti1Image, ndim: int) -> tuple[float, ...]:
    """Voxel sizes as stored: nibabel's loader silently turns 0 into 1 and negatives positive."""
    with nib.openers.ImageOpener(str(path)) as handle:
        header = type(image.header).from_fileobj(handle, check=False)
    return tuple(float(z) for z in header["pixdim"][1 : ndim + 1])


def _load_quietly(path: Path) -> nib.Nifti1Image:
    """``nib.load`` without nibabel's log lines about header fields it fixes or rejects (the
    stored zooms are read anyway; a rejected header becomes our one-line error)."""
    log = logging.getLogger("nibabel.global")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        image = nib.load(str(path))
    finally:
        log.setLevel(level)
    if not isinstance(image, nib.Nifti1Image):
        raise DataError(f"{path}: a {type(image).__name__} file; expected a NIfTI image (.nii or .nii.gz)")
    return image


DEFLATE_MAX_RATIO = 1032
"""No deflate stream expands by more than about 1032:1, so a .nii.gz of ``n`` bytes cannot
hold more than ``1032 n`` bytes of image."""


def _check_declared_size(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse a header that declares more data than the file can hold, before reading it
    (a corrupt dimension would otherwise allocate gigabytes or decompress for minutes)."""
    header = image.header
    declared = int(header.get_data_offset()) + int(
        np.prod(header.get_data_shape(), dtype=np.float64) * header.get_data_dtype().itemsize
    )
    stored = path.stat().st_size
    if path.name.endswith(".gz"):
        with path.open("rb") as handle:
            handle.seek(-4, 2)
            isize = int.from_bytes(handle.read(4), "little")  # uncompressed size mod 2**32
        possible = DEFLATE_MAX_RATIO * stored if declared >= 2**32 else isize
    else:
        possible = stored
    if declared > possible:
        raise DataError(
            f"{path}: header declares shape {tuple(header.get_data_shape())} of "
            f"{header.get_data_dtype()} ({declared:,} bytes) but the file holds at most "
            f"{possible:,} (truncated or corrupt file?)"
        )


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
    except (
        OSError,
        EOFError,
        ValueError,
        OverflowError,
        MemoryError,
        zlib.error,
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
    ) as exc:
        raise DataError(f"{path}: cannot read NIfTI (truncated or corrupt file?): {exc}") from exc
    if array.dtype.names is not None or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(
            f"{path}: {array.dtype} voxels (an RGB or other multi-component image?); expected one grey value per voxel"
        )
    if array.ndim == 0:
        raise DataError(f"{path}: a NIfTI without dimensions; expected a 2-D or 3-D image")
    spacing = _stored_zooms(path, image, array.ndim)
    array, spacing, origin, reoriented = _to_our_axes(path, array, spacing, image.affine)
    slow_axis = min(array.ndim, 3) - 1
    positions = origin + np.arange(array.shape[slow_axis]) * spacing[slow_axis]
    meta: dict[str, Any] = {}
    side = sidecar_path(path)
    if reoriented is not None:
        meta[REORIENTED] = reoriented  # a foreign file: its sidecar (if any) describes other axes
    elif side.is_file():
        meta, exact, listed = _read_sidecar(side)
        if exact is not None and len(exact) == len(spacing) and np.allclose(exact, spacing, rtol=1e-5):
            spacing = tuple(exact)  # the header holds float32 zooms only
        if listed is not None:
            positions = listed
            if positions.shape != (array.shape[slow_axis],):
                raise DataError(
                    f"{side}: {positions.size} positions for {array.shape[slow_axis]} slices in {path.name}"
                )
    return Image(array=array, spacing=spacing, positions=np.asarray(positions, dtype=np.float64), meta=meta)
