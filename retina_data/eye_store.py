"""The eye store: a chunked zarr (v3) data set for cohorts, read lazily one B-scan at a time.

::

    <name>.zarr/                         root group; attributes: format, format_version, eye_ids, num_labels
      <subject>_<OD|OS>/                 one group per eye; attributes: subject, laterality, spacing (dH, dW, dD)
                                         mm, bscan_positions, slo_positions, has_labels, meta, ome (multiscales)
        oct      [D, H, W] float32       one chunk per B-scan (z = B-scan index, y = depth, x = fast axis)
        labels   [D, H, W] uint8         one chunk per B-scan; absent when the eye is unlabelled
        slo      [W, Ds]   float32       one chunk; absent when the eye has no SLO

Arrays are in OME-Zarr axis order (``z, y, x``) and each eye group carries OME-Zarr
``multiscales`` metadata (one scale, axes in millimetres), so OME-Zarr viewers show the OCT;
the exact, possibly non-uniform slow-axis positions are in ``bscan_positions``. Volumes are
returned in the axis order of :class:`~retina_data.eye.Eye` (``[H, W, D]``).

Opening a store reads its root attributes only; :meth:`EyeStore.read_bscans` reads the
chunks of the B-scans asked for and nothing else. No voxel is cached; an eye's metadata is
read and checked once, on its first use, and kept (its :class:`EyeInfo`, its ``meta`` and its
arrays' metadata, which eyes of one shape share: about 1.2 kB per eye of a phantom cohort, where
a 64-float latent code with its Adam moments holds 768 B), so that a read costs its chunks only
(half the time of opening the eye's group and arrays again) and memory grows with the number of
eyes by that much only. Chunks are zstd frames with checksums: a corrupt chunk fails
to decode, and a missing one reads as the fill value (NaN for the OCT, 255 for labels, which
no stored chunk holds), so either is reported with its eye and B-scan instead of being read
as data. A location is a local path or an fsspec URL (``memory://``, ``file://``, ``s3://``
...); a local store is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import zarr
from tqdm import tqdm
from zarr.codecs import ZstdCodec
from zarr.errors import ZarrUserWarning

from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import LATERALITIES, Eye, positions_problem
from retina_data.identifiers import check_id, id_problem
from retina_data.labels import FLUID_LABEL, label_names
from retina_data.tree import check_values

STORE_SUFFIX = ".zarr"
FORMAT_NAME = "resa-oct eye store"
FORMAT_VERSION = 1
OCT_FILL = np.float32(np.nan)
"""What a missing OCT chunk reads as (never stored: OCT with NaN is refused on writing)."""
LABEL_FILL = 255
"""What a missing label chunk reads as (never stored: labels are ``0..FLUID_LABEL``)."""
OME_VERSION = "0.5"
AXES = ("z", "y", "x")
_COMPRESSOR = ZstdCodec(level=3, checksum=True)
_READ_ERRORS = (RuntimeError, ValueError, OSError, TypeError)
"""What zarr raises for a chunk or metadata document it cannot decode (zstd checksum, size, JSON)."""
_EYE_ID = re.compile(r"^(?P<subject>.+)_(?P<laterality>OD|OS)$")


@dataclass(frozen=True)
class EyeInfo:
    """One eye's metadata, read without touching its arrays.

    Attributes:
        eye_id: ``<subject>_<OD|OS>``.
        shape: OCT shape ``(H, W, D)``.
        spacing: voxel size ``(dH, dW, dD)`` in mm.
        bscan_positions: slow-axis position of each B-scan ``[D]`` in mm.
        slo_positions: slow-axis position of each SLO column ``[Ds]`` in mm, ``None`` without SLO.
    """

    eye_id: str
    subject: str
    laterality: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    bscan_positions: np.ndarray
    slo_positions: np.ndarray | None
    has_labels: bool
    has_slo: bool


def _text(location: str | os.PathLike) -> str:
    return os.fspath(location)


def _is_url(location: str) -> bool:
    return "://" in location


def local_path(location: str | os.PathLike) -> Path | None:
    """The local folder of ``location`` (a path, or a ``file://`` / ``local://`` URL); ``None`` for
    a URL of another file system."""
    text = _text(location)
    if not _is_url(text):
        return Path(text)
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    try:
        filesystem, path = fsspec.core.url_to_fs(text)
    except (ValueError, ImportError) as exc:
        raise DataError(f"{text}: cannot open this URL ({exc}); expected a path or an fsspec URL") from exc
    return Path(path) if isinstance(filesystem, LocalFileSystem) else None


def _root_format(attributes: dict[str, Any]) -> bool:
    return attributes.get("format") == FORMAT_NAME


def _holds_root_format(folder: Path) -> bool:
    """Whether the local ``folder`` holds an eye store's root attributes (not just a ``.zarr`` name)."""
    try:
        document = json.loads((folder / "zarr.json").read_text(encoding="utf-8"))
        return _root_format(document.get("attributes") or {})
    except (OSError, ValueError, AttributeError):
        return False


def is_store(location: str | os.PathLike) -> bool:
    """Whether ``location`` names an eye store: a path or URL ending ``.zarr``, or a folder (URL)
    whose root attributes say it is one. Reads at most the root ``zarr.json``."""
    text = _text(location)
    if text.rstrip("/").endswith(STORE_SUFFIX):
        return True
    try:
        local = local_path(text)
    except DataError:
        return False
    return _holds_root_format(local) if local is not None else _url_holds_root_format(text)


def _url_holds_root_format(url: str) -> bool:
    """Whether the store at ``url`` (another file system than the local one) has an eye store's root attributes."""
    try:
        return _root_format(zarr.open_group(url, mode="r", zarr_format=3, use_consolidated=False).attrs.asdict())
    except (*_READ_ERRORS, KeyError, ImportError):
        return False


# --- writing ------------------------------------------------------------------------------


def _ome_attributes(eye: Eye) -> dict[str, Any]:
    """OME-Zarr ``multiscales`` of one eye: one scale, axes ``z, y, x`` in millimetres; the
    translation puts the first B-scan at its position."""
    d_h, d_w, d_d = eye.spacing
    return {
        "version": OME_VERSION,
        "multiscales": [
            {
                "name": eye.eye_id,
                "axes": [{"name": axis, "type": "space", "unit": "millimeter"} for axis in AXES],
                "datasets": [
                    {
                        "path": "oct",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [d_d, d_h, d_w]},
                            {"type": "translation", "translation": [float(eye.bscan_positions[0]), 0.0, 0.0]},
                        ],
                    }
                ],
            }
        ],
    }


def _json_meta(meta: dict[str, Any], where: str) -> dict[str, Any]:
    """``meta`` as it reads back from JSON; values JSON cannot hold are refused."""
    try:
        return json.loads(json.dumps(meta, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{where}: meta cannot be stored as JSON ({exc}); expected numbers, text, lists and mappings"
        ) from exc


def _write_eye(root: zarr.Group, eye: Eye, label: str) -> None:
    """One eye's group, arrays and attributes (values checked first, so nothing unreadable is stored)."""
    where = f"{label}: eye {eye.eye_id}"
    if min(eye.shape) == 0:
        raise DataError(f"{where}: OCT shape {eye.shape}; expected at least one B-scan of at least one voxel")
    check_values(f"{where}: OCT", eye.oct)
    if eye.labels is not None:
        check_values(f"{where}: labels", eye.labels, labels=True)
    if eye.slo is not None:
        check_values(f"{where}: SLO", eye.slo)
    height, width, depth = eye.shape
    group = root.create_group(
        eye.eye_id,
        attributes={
            "subject": eye.subject,
            "laterality": eye.laterality,
            "spacing": list(eye.spacing),
            "bscan_positions": eye.bscan_positions.tolist(),
            "slo_positions": None if eye.slo_positions is None else eye.slo_positions.tolist(),
            "has_labels": eye.labels is not None,
            "meta": _json_meta(eye.meta, where),
            "ome": _ome_attributes(eye),
        },
    )
    volumes = {"oct": (eye.oct, np.float32, OCT_FILL), "labels": (eye.labels, np.uint8, LABEL_FILL)}
    for name, (volume, dtype, fill) in volumes.items():
        if volume is None:
            continue
        array = group.create_array(
            name,
            shape=(depth, height, width),
            chunks=(1, height, width),
            dtype=dtype,
            fill_value=fill,
            compressors=_COMPRESSOR,
            dimension_names=AXES,
            config={"write_empty_chunks": True},
        )
        array[:] = np.moveaxis(volume.astype(dtype, copy=False), 2, 0)
    if eye.slo is not None:
        slo = group.create_array(
            "slo",
            shape=eye.slo.shape,
            chunks=eye.slo.shape,
            dtype=np.float32,
            fill_value=OCT_FILL,
            compressors=_COMPRESSOR,
            dimension_names=("x", "slo_column"),
            config={"write_empty_chunks": True},
        )
        slo[:] = eye.slo.astype(np.float32, copy=False)


def _write_eyes(target: str, label: str, eyes: Iterable[Eye], progress: bool, num_labels: int | None) -> None:
    """Every eye into a new store at ``target``; the root attributes (which make it a store) last."""
    root = zarr.open_group(target, mode="w", zarr_format=3)
    ids: list[str] = []
    seen: dict[str, str] = {}
    fluid = False
    for eye in tqdm(eyes, desc="store", unit="eye", disable=not progress):
        eye_id = check_id(eye.eye_id, f"{label}: eye id")
        if eye_id.casefold() in seen:
            raise DataError(
                f"{label}: eye {eye_id} given twice (as {seen[eye_id.casefold()]}, ignoring letter "
                "case); expected each eye once"
            )
        seen[eye_id.casefold()] = eye_id
        _write_eye(root, eye, label)
        ids.append(eye_id)
        fluid = fluid or (eye.labels is not None and eye.labels.size > 0 and int(eye.labels.max()) >= FLUID_LABEL)
    if not ids:
        raise DataError(f"{label}: no eyes to write")
    root.attrs.update(
        {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "eye_ids": ids,
            "num_labels": len(label_names(fluid)) if num_labels is None else int(num_labels),
        }
    )


def _refuse_existing(location: str, local: Path | None, overwrite: bool) -> None:
    """An existing output is replaced only with ``overwrite``, and only when it is an eye store."""
    if local is not None:
        if not local.exists():
            return
        exists, store = True, local.is_dir() and _holds_root_format(local)
    else:
        import fsspec

        filesystem, path = fsspec.core.url_to_fs(location)
        exists = filesystem.exists(path)
        store = exists and _url_holds_root_format(location)
    if exists and not overwrite:
        raise OutputExistsError(f"{location}: already exists; pass --overwrite to replace it")
    if exists and not store:
        raise OutputExistsError(
            f"{location}: exists and is not an eye store; expected a new path or a store to replace"
        )


def write_store(
    location: str | os.PathLike,
    eyes: Iterable[Eye],
    *,
    overwrite: bool = False,
    progress: bool = True,
    num_labels: int | None = None,
) -> str:
    """Write ``eyes`` (an iterable: one eye in memory at a time) into a new eye store.

    A local store is written under a temporary name beside ``location`` and renamed into place
    when complete, so an interrupted write leaves the old store (or nothing); an existing store
    is replaced only with ``overwrite`` (anything else at ``location`` is refused). A URL of
    another file system is written in place, its root attributes last. ``num_labels``: the
    number of label classes (default: 13, or 14 when an eye holds fluid labels).

    Returns:
        ``location`` as text.
    """
    text = _text(location)
    local = local_path(text)
    _refuse_existing(text, local, overwrite)
    if local is None:
        _write_eyes(text, text, eyes, progress, num_labels)
        return text
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{local.name}.partial-", dir=local.parent))
    replaced = local.with_name(f"{staging.name}.replaced")
    try:
        _write_eyes(str(staging), text, eyes, progress, num_labels)
        if local.exists():
            os.replace(local, replaced)
        os.replace(staging, local)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(replaced, ignore_errors=True)
    return text


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _OpenEye:
    """One eye's metadata as checked on its first use (kept by the store; no chunk): its info,
    its ``meta`` attribute and the metadata of its arrays (``oct``, and ``labels`` and ``slo``
    where present), shared with the other eyes whose arrays agree."""

    info: EyeInfo
    meta: dict[str, Any]
    arrays: dict[str, Any]


def _number_list(value: object) -> TypeGuard[list[float]]:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


class EyeStore:
    """A store opened for reading (see the module doc); holds the eye ids, nothing else."""

    def __init__(self, root: zarr.Group, location: str) -> None:
        """Check the root attributes of ``root`` (opened from ``location``, named in errors)."""
        self.location = location
        attributes = root.attrs.asdict()
        expected = (
            f"expected an eye store written by `python -m retina_data store` (root attribute format = {FORMAT_NAME!r})"
        )
        if not _root_format(attributes):
            raise DataError(
                f"{location}: not an eye store: root attribute format = {attributes.get('format')!r}; {expected}"
            )
        version = attributes.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
            raise DataError(
                f"{location}: eye store format_version = {version!r}; expected 1..{FORMAT_VERSION} "
                "(written by a newer version of this toolkit?)"
            )
        ids = attributes.get("eye_ids")
        if not isinstance(ids, list) or not ids:
            raise DataError(f"{location}: root attribute eye_ids = {ids!r}; expected a non-empty list of eye ids")
        for eye_id in ids:
            problem = id_problem(eye_id)
            if problem is None and not _EYE_ID.match(eye_id):
                problem = "expected <subject>_<OD|OS>"
            if problem is not None:
                raise DataError(f"{location}: root attribute eye_ids holds {eye_id!r}: {problem}")
        if len({eye_id.casefold() for eye_id in ids}) != len(ids):
            raise DataError(f"{location}: root attribute eye_ids lists an eye twice (ignoring letter case)")
        num_labels = attributes.get("num_labels")
        if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
            raise DataError(f"{location}: root attribute num_labels = {num_labels!r}; expected a positive integer")
        self._root = root
        self.eye_ids: list[str] = list(ids)
        self._listed = frozenset(self.eye_ids)
        self.num_labels: int = num_labels
        self._opened: dict[str, _OpenEye] = {}
        """Every eye's checked metadata once used (eye id -> metadata)."""
        self._array_metadata: dict[str, Any] = {}
        """Array metadata of the eyes by its JSON text: one object for the arrays of all eyes of a shape."""

    @classmethod
    def open(cls, location: str | os.PathLike) -> EyeStore:
        """Open the store at a path or fsspec URL; reads its root attributes only.

        Raises:
            DataError: nothing there, or not an eye store.
        """
        text = _text(location)
        local = None if _is_url(text) else Path(text)
        if local is not None and not local.is_dir():
            raise DataError(f"{text}: eye store not found; expected a folder written by `python -m retina_data store`")
        try:
            root = zarr.open_group(text, mode="r", zarr_format=3, use_consolidated=False)
        except (*_READ_ERRORS, KeyError, ImportError) as exc:
            raise DataError(
                f"{text}: cannot open as an eye store ({type(exc).__name__}: {exc}); expected a zarr "
                "group written by `python -m retina_data store`"
            ) from exc
        return cls(root, text)

    def __len__(self) -> int:
        return len(self.eye_ids)

    def __repr__(self) -> str:
        return f"EyeStore({self.location!r}, {len(self)} eyes)"

    def unlisted_groups(self) -> list[str]:
        """Groups at the root that the root attribute ``eye_ids`` does not list (lists the root)."""
        listed = set(self.eye_ids)
        with warnings.catch_warnings():  # files beside the groups (the folds file) are no zarr nodes
            warnings.simplefilter("ignore", ZarrUserWarning)
            return sorted(name for name in self._root.group_keys() if name not in listed)

    def _open_eye(self, eye_id: str) -> _OpenEye:
        """The eye's metadata, checked against each other: read on its first use, then kept."""
        opened = self._opened.get(eye_id)
        if opened is None:
            opened = self._opened[eye_id] = self._read_metadata(eye_id)
        return opened

    def _read_metadata(self, eye_id: str) -> _OpenEye:
        """The eye's group and arrays opened (their metadata documents read) and checked."""
        where = f"{self.location}: eye {eye_id}"
        if eye_id not in self._listed:
            shown = ", ".join(self.eye_ids[:10]) + (" ..." if len(self.eye_ids) > 10 else "")
            raise DataError(f"{self.location}: no eye {eye_id!r}; the store holds {shown}")
        try:
            group = self._root[eye_id]
        except (*_READ_ERRORS, KeyError) as exc:
            raise DataError(
                f"{where}: listed in the root attributes but its group cannot be read "
                f"({type(exc).__name__}: {exc}); expected a zarr group"
            ) from exc
        if not isinstance(group, zarr.Group):
            raise DataError(f"{where}: is an array; expected a group holding oct, labels and slo")
        attributes = group.attrs.asdict()
        match = _EYE_ID.match(eye_id)
        assert match is not None
        if (attributes.get("subject"), attributes.get("laterality")) != (match["subject"], match["laterality"]):
            raise DataError(
                f"{where}: attributes subject = {attributes.get('subject')!r}, laterality = "
                f"{attributes.get('laterality')!r}; expected {match['subject']!r} and one of "
                f"{LATERALITIES} matching the eye id"
            )
        spacing = attributes.get("spacing")
        if not _number_list(spacing) or len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise DataError(
                f"{where}: attribute spacing = {spacing!r}; expected 3 positive voxel sizes (dH, dW, dD) mm"
            )
        has_labels = attributes.get("has_labels")
        if not isinstance(has_labels, bool):
            raise DataError(f"{where}: attribute has_labels = {has_labels!r}; expected true or false")
        oct_array = self._array(group, "oct", np.float32, where)
        depth, height, width = oct_array.shape
        labels = self._array(group, "labels", np.uint8, where) if has_labels else None
        if labels is not None and labels.shape != oct_array.shape:
            raise DataError(f"{where}: labels shape {labels.shape} != oct shape {oct_array.shape}; expected [D, H, W]")
        positions = self._positions(attributes, "bscan_positions", depth, where)
        slo = slo_positions = None
        if attributes.get("slo_positions") is not None:
            slo = self._array(group, "slo", np.float32, where, ndim=2)
            if slo.shape[0] != width:
                raise DataError(f"{where}: slo shape {slo.shape}; expected [W={width}, Ds]")
            slo_positions = self._positions(attributes, "slo_positions", slo.shape[1], where)
        info = EyeInfo(
            eye_id=eye_id,
            subject=match["subject"],
            laterality=match["laterality"],
            shape=(height, width, depth),
            spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
            bscan_positions=positions,
            slo_positions=slo_positions,
            has_labels=labels is not None,
            has_slo=slo is not None,
        )
        meta = attributes.get("meta")
        arrays = {
            name: self._shared_metadata(array)
            for name, array in (("oct", oct_array), ("labels", labels), ("slo", slo))
            if array is not None
        }
        return _OpenEye(info, dict(meta) if isinstance(meta, dict) else {}, arrays)

    def _shared_metadata(self, array: zarr.Array) -> Any:
        """``array``'s metadata, as the one object kept for every array with the same metadata."""
        metadata = array.metadata
        key = json.dumps(metadata.to_dict(), sort_keys=True, default=str)
        return self._array_metadata.setdefault(key, metadata)

    def _handle(self, opened: _OpenEye, name: str) -> zarr.Array:
        """The eye's array ``name`` made from its kept metadata (reads nothing)."""
        return zarr.Array(
            zarr.AsyncArray(metadata=opened.arrays[name], store_path=self._root.store_path / opened.info.eye_id / name)
        )

    @staticmethod
    def _array(group: zarr.Group, name: str, dtype: type, where: str, ndim: int = 3) -> zarr.Array:
        """The array ``name`` of an eye group: present, of ``dtype``, ``ndim``-D; volumes chunked per B-scan."""
        try:
            array = group[name]
        except (*_READ_ERRORS, KeyError) as exc:
            raise DataError(
                f"{where}: {name} array missing or unreadable ({type(exc).__name__}: {exc}); expected "
                f"a {np.dtype(dtype)} array"
            ) from exc
        if not isinstance(array, zarr.Array) or array.dtype != np.dtype(dtype) or array.ndim != ndim:
            found = f"dtype {array.dtype}, shape {array.shape}" if isinstance(array, zarr.Array) else "a group"
            raise DataError(f"{where}: {name} is {found}; expected a {ndim}-D {np.dtype(dtype)} array")
        if ndim == 3 and array.chunks != (1, *array.shape[1:]):
            raise DataError(
                f"{where}: {name} chunks {array.chunks}; expected one chunk per B-scan {(1, *array.shape[1:])}"
            )
        return array

    @staticmethod
    def _positions(attributes: dict[str, Any], key: str, count: int, where: str) -> np.ndarray:
        values = attributes.get(key)
        if not _number_list(values) or len(values) != count:
            raise DataError(f"{where}: attribute {key} = {str(values)[:60]}; expected {count} positions (mm)")
        positions = np.asarray(values, dtype=np.float64)
        problem = positions_problem(positions, key)
        if problem is not None:
            raise DataError(f"{where}: {problem}")
        return positions

    def info(self, eye_id: str) -> EyeInfo:
        """The eye's shape, spacing, positions and which arrays it has; reads metadata only."""
        return self._open_eye(eye_id).info

    def _check_bscans(self, opened: _OpenEye, bscans: Sequence[int], increasing: bool) -> np.ndarray:
        """``bscans`` as indices ``[k]`` of the eye's B-scans (``increasing``: strictly, as an Eye needs)."""
        depth = opened.info.shape[2]
        where = f"{self.location}: eye {opened.info.eye_id}"
        values = list(bscans)
        if not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in values):
            raise DataError(f"{where}: B-scan indices {values[:10]}; expected integers")
        index = np.asarray(values, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= depth):
            raise DataError(f"{where}: B-scan indices {index.min()}..{index.max()}; expected 0..{depth - 1}")
        if increasing and np.any(np.diff(index) <= 0):
            raise DataError(f"{where}: B-scan indices must be strictly increasing")
        return index

    def _read_volume(self, opened: _OpenEye, name: str, index: np.ndarray, fill_is: Any) -> np.ndarray:
        """The chunks of the array ``name`` (``oct``, ``labels``) of the B-scans ``index`` as
        ``[H, W, k]``; a corrupt or missing chunk is a :class:`DataError` naming the eye and the B-scan."""
        where = f"{self.location}: eye {opened.info.eye_id}"
        height, width, _ = opened.info.shape
        array = self._handle(opened, name)
        if index.size == 0:
            return np.empty((height, width, 0), dtype=array.dtype)
        try:
            planes = np.asarray(array.oindex[index])
        except _READ_ERRORS as whole:
            for bscan in index.tolist():
                try:
                    array[bscan]
                except _READ_ERRORS as exc:
                    raise DataError(
                        f"{where}: {name} chunk of B-scan {bscan} cannot be read (corrupt?): "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            raise DataError(f"{where}: {name} cannot be read: {type(whole).__name__}: {whole}") from whole
        missing = index[fill_is(planes[:, 0, 0])]
        if missing.size:
            raise DataError(
                f"{where}: {name} chunk(s) of B-scan(s) {', '.join(map(str, missing[:10].tolist()))} "
                "missing; expected one chunk per B-scan (write the store again)"
            )
        return np.ascontiguousarray(np.moveaxis(planes, 0, 2))

    def _read(self, opened: _OpenEye, index: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        oct_volume = self._read_volume(opened, "oct", index, np.isnan)
        labels = (
            None
            if "labels" not in opened.arrays
            else self._read_volume(opened, "labels", index, lambda values: values == LABEL_FILL)
        )
        return oct_volume, labels

    def read_bscans(self, eye_id: str, bscans: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """OCT ``[H, W, k]`` float32 and labels ``[H, W, k]`` uint8 (``None`` when unlabelled) of the
        B-scans ``bscans`` (indices, in the order given); only their chunks are read."""
        opened = self._open_eye(eye_id)
        return self._read(opened, self._check_bscans(opened, bscans, increasing=False))

    def read_eye(self, eye_id: str, bscans: Sequence[int] | None = None) -> Eye:
        """The eye, or only the B-scans ``bscans`` (strictly increasing indices) at their positions,
        with the nominal ``dD`` of the kept B-scans as :meth:`Eye.select_bscans` gives it; the SLO
        stays whole."""
        opened = self._open_eye(eye_id)
        info = opened.info
        index = np.arange(info.shape[2]) if bscans is None else self._check_bscans(opened, bscans, increasing=True)
        oct_volume, labels = self._read(opened, index)
        slo = None
        if "slo" in opened.arrays:
            try:
                slo = self._handle(opened, "slo")[:]
            except _READ_ERRORS as exc:
                raise DataError(
                    f"{self.location}: eye {eye_id}: slo chunk cannot be read (corrupt?): {type(exc).__name__}: {exc}"
                ) from exc
            if np.isnan(slo).any():
                raise DataError(
                    f"{self.location}: eye {eye_id}: slo chunk missing or holding NaN; expected "
                    "the SLO image (write the store again)"
                )
        try:
            eye = Eye(
                oct=oct_volume,
                spacing=info.spacing,
                subject=info.subject,
                laterality=info.laterality,
                labels=labels,
                slo=slo,
                bscan_positions=info.bscan_positions[index],
                slo_positions=info.slo_positions,
                meta=copy.deepcopy(opened.meta),
            )
        except DataError as exc:
            raise DataError(f"{self.location}: {exc}") from exc
        return eye if bscans is None else eye.select_bscans(slice(None))
