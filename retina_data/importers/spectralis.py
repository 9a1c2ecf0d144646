"""Import of Heidelberg Spectralis exports (``.vol``, ``.e2e``, XML) through ``eyepy``.

``eyepy`` is an optional dependency (``pip install 'resa-oct[spectralis]'``), imported only
when a file is read.

Mapping from eyepy's ``EyeVolume`` (B-scans ``[D, H, W]``) to an :class:`Eye`:

- OCT: eyepy's display intensities (``volume.data``, its log transform for ``.vol``) as
  ``[H, W, D]`` float32 in ``[0, 1]``.
- spacing ``(dH, dW, dD)`` = ``(scale_y, scale_x, scale_z)`` in mm; files that store no mm
  scale (E2E) need ``spacing`` from the caller.
- B-scan positions: the distance (mm) of each B-scan's start point from the first one,
  across the scan lines (the B-scans may run in any direction on the localizer).
- SLO ``[W, D]``: the localizer sampled (bilinear) at every A-scan, whose localizer
  position lies on the line from its B-scan's start point to its end point.
- labels from the layer annotations, boundary by boundary (see :data:`HEYEX_BOUNDARIES`);
  an annotation that is all NaN or all 0 (eyepy writes 0 for an unsegmented layer) is
  absent. With some boundaries missing, the region between two present boundaries takes
  the class just below the upper one, and ``meta["label_boundaries"]`` lists the
  boundaries used. Without any annotation the labels are ``None``.

Everything the import could not map is said in ``meta["import_notes"]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.labels import BOUNDARY_NAMES, labels_from_boundaries
from retina_data.preprocessing import scale_to_unit

HEYEX_BOUNDARIES: dict[str, tuple[str, ...]] = {
    "ILM": ("ILM",),
    "RNFL/GCL": ("RNFL",),
    "GCL/IPL": ("GCL",),
    "IPL/INL": ("IPL",),
    "INL/OPL": ("INL",),
    "OPL/ONL": ("OPL",),
    "ELM": ("ELM",),
    "IS/EZ": ("PR1", "EZ", "IOS"),
    "EZ/OS": (),
    "OS/IZ": ("PR2", "IZ"),
    "IZ/RPE": ("RPE",),
    "BM": ("BM",),
}
"""Our boundary (see :data:`retina_data.labels.BOUNDARY_NAMES`) -> Heyex layer names, first
present wins. Heyex names a boundary after the layer above it (``RNFL`` is the lower edge
of the RNFL); ``PR1`` is the ellipsoid zone's upper edge, ``PR2`` the interdigitation zone,
``RPE`` the upper edge of the RPE. The lower edge of the ellipsoid zone has no Heyex line."""

INSTALL_HINT = "install eyepy (pip install 'resa-oct[spectralis]')"


def _eyepy() -> Any:
    try:
        import eyepy
    except ImportError as exc:
        raise DataError(f"reading Spectralis files needs eyepy: {INSTALL_HINT}") from exc
    logging.getLogger("eyepy").setLevel(logging.ERROR)
    return eyepy


def read_heyex(path: str | Path) -> Any:
    """eyepy's ``EyeVolume`` of a ``.vol``, ``.e2e`` or XML export (file or folder)."""
    eyepy = _eyepy()
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: Spectralis export not found")
    suffix = path.suffix.lower()
    if suffix == ".vol":
        reader = eyepy.import_heyex_vol
    elif suffix == ".e2e":
        reader = eyepy.import_heyex_e2e
    elif suffix == ".xml" or path.is_dir():
        reader = eyepy.import_heyex_xml
    else:
        raise DataError(f"{path}: unknown Spectralis export; expected a .vol, .e2e or .xml file (or an XML folder)")
    if suffix == ".vol":
        _refuse_non_volume_scan(path)
    try:
        return reader(path)
    except Exception as exc:  # eyepy and construct raise many types for malformed files
        reason = " ".join(str(exc).split())  # construct's messages span several lines
        raise DataError(f"{path}: cannot read Spectralis export (truncated or not a Heyex file?): "
                        f"{type(exc).__name__}: {reason}") from exc


VOL_SCAN_PATTERN_OFFSET = 96
"""Byte offset of the ``ScanPattern`` int32 in a ``.vol`` file header (after Version, the sizes,
scales, SLO fields, ScanFocus, ScanPosition and ExamTime)."""
NOT_VOLUME_PATTERNS = {1: "line scan", 2: "circle scan", 5: "radial scan"}


def _refuse_non_volume_scan(path: Path) -> None:
    """A ``.vol`` of a line, circle or radial scan is a valid file but not a volume: say so."""
    with path.open("rb") as handle:
        header = handle.read(VOL_SCAN_PATTERN_OFFSET + 4)
    if len(header) < VOL_SCAN_PATTERN_OFFSET + 4 or not header.startswith(b"HSF-OCT"):
        return  # left to the reader, which names a malformed file
    pattern = int.from_bytes(header[VOL_SCAN_PATTERN_OFFSET:], "little", signed=True)
    if pattern in NOT_VOLUME_PATTERNS:
        raise DataError(f"{path}: scan pattern {pattern} ({NOT_VOLUME_PATTERNS[pattern]}) is not a volume scan; "
                        "expected a raster volume scan (pattern 3 or 4)")


def _laterality(value: Any, path: Path) -> str:
    text = str(value).upper()
    for token, laterality in (("OD", "OD"), ("OS", "OS"), ("RIGHT", "OD"), ("LEFT", "OS")):
        if token in text:
            return laterality
    if text.strip() in ("R", "L"):
        return "OD" if text.strip() == "R" else "OS"
    raise DataError(f"{path}: laterality {value!r} in the file is not OD or OS; give --laterality")


def _display_intensities(volume: Any, notes: list[str]) -> np.ndarray:
    """B-scans ``[D, H, W]`` in ``[0, 1]``: eyepy's display transform of the stored values.

    ``.vol`` files store linear reflectivities in ``[0, 1]`` (and FLT_MAX where invalid);
    a file whose values exceed that range holds display values already (as some converters
    write), which are then scaled by their range instead of saturating.
    """
    if volume.meta.get("intensity_transform") == "vol":
        raw = volume.raw_data
        valid = raw < 3.0e38
        if valid.any() and raw[valid].max() > 1:
            notes.append(f"B-scan values up to {raw[valid].max():.4g} exceed the .vol reflectivity range "
                         "[0, 1]: taken as display intensities and scaled by their range")
            return scale_to_unit(np.where(valid, raw, 0))
    return scale_to_unit(np.asarray(volume.data))


def bscan_lines(volume: Any) -> tuple[np.ndarray, np.ndarray]:
    """Start and end point ``[D, 2]`` (x, y) of every B-scan on the localizer, in its position unit."""
    metas = volume.meta["bscan_meta"]
    starts = np.array([m["start_pos"] for m in metas], dtype=np.float64)
    ends = np.array([m["end_pos"] for m in metas], dtype=np.float64)
    return starts, ends


def bscan_positions(starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """Slow-axis position ``[D]`` of each B-scan: distance of its start from the first one's,
    across the scan line; ``None`` when they are not strictly increasing (e.g. a radial scan)."""
    if len(starts) == 1:
        return np.zeros(1)
    direction = ends[0] - starts[0]
    length = np.linalg.norm(direction)
    if length == 0:
        return None
    normal = np.array([-direction[1], direction[0]]) / length
    positions = (starts - starts[0]) @ normal
    if positions[-1] < 0:
        positions = 0.0 - positions
    return positions if np.all(np.diff(positions) > 0) else None


def sample_localizer(localizer: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int,
                     scale: tuple[float, float], offset: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, float]:
    """The localizer ``[rows, cols]`` sampled bilinearly at every A-scan: SLO ``[W, D]``.

    A-scan ``w`` of B-scan ``d`` lies at ``start[d] + (end[d] - start[d]) * w / (W - 1)``
    (x, y in the position unit); its pixel is ``((y + offset_y) / scale_y, (x + offset_x) / scale_x)``.
    Returns the samples (0 outside the image) and the fraction of A-scans inside the image.
    """
    t = np.linspace(0.0, 1.0, width)[:, None, None]
    points = starts[None] + (ends - starts)[None] * t
    cols = (points[..., 0] + offset[0]) / scale[0]
    rows = (points[..., 1] + offset[1]) / scale[1]
    inside = (rows >= -0.5) & (rows <= localizer.shape[0] - 0.5) & (cols >= -0.5) & (cols <= localizer.shape[1] - 0.5)
    samples = map_coordinates(np.asarray(localizer, dtype=np.float32), [rows, cols], order=1, mode="nearest")
    return np.where(inside, samples, 0.0).astype(np.float32), float(inside.mean())


def _layer_boundaries(volume: Any) -> dict[int, np.ndarray]:
    """Boundary index -> rows ``[W, D]`` of each of our boundaries present in the annotations."""
    layers = {name.upper(): layer.data for name, layer in volume.layers.items()}
    boundaries: dict[int, np.ndarray] = {}
    for index, ours in enumerate(BOUNDARY_NAMES):
        for name in HEYEX_BOUNDARIES[ours]:
            data = layers.get(name)
            if data is None:
                continue
            data = np.asarray(data, dtype=np.float64)
            finite = np.isfinite(data)
            if not finite.any() or np.all(data[finite] == 0):
                continue
            boundaries[index] = data.T
            break
    return boundaries


def import_spectralis(path: str | Path, subject: str | None = None, laterality: str | None = None,
                      spacing: tuple[float, float, float] | None = None) -> Eye:
    """An :class:`Eye` from a Spectralis export (see the module doc for the mapping).

    Args:
        path: ``.vol``, ``.e2e`` or ``.xml`` file (or the XML export's folder).
        subject: subject id; defaults to the file name without suffix.
        laterality: ``"OD"``/``"OS"``, overriding the file's.
        spacing: ``(dH, dW, dD)`` in mm, overriding the file's (needed when it has none).
    """
    path = Path(path)
    volume = read_heyex(path)
    notes: list[str] = []
    data = _display_intensities(volume, notes)
    oct_volume = np.ascontiguousarray(data.transpose(1, 2, 0))
    depth, _, width = data.shape
    if spacing is None:
        if volume.meta.get("scale_unit") != "mm":
            raise DataError(f"{path}: the file gives no spacing in mm (unit {volume.meta.get('scale_unit')!r}); "
                            "give --spacing dH dW dD")
        spacing = (float(volume.scale_y), float(volume.scale_x), float(volume.scale_z))
    starts, ends = bscan_lines(volume)
    pos_unit = volume.meta["bscan_meta"][0].get("pos_unit", "mm")
    positions = bscan_positions(starts, ends) if pos_unit == "mm" else None
    if positions is None:
        positions = np.arange(depth) * spacing[2]
        notes.append(f"B-scan start points give no increasing positions in mm (unit {pos_unit!r}); "
                     f"assumed evenly spaced at {spacing[2]} mm")
    slo = None
    localizer = getattr(volume, "localizer", None)
    if localizer is None:
        notes.append("no localizer image: SLO is None")
    else:
        loc_meta = localizer.meta
        offset = (15.0, 15.0) if loc_meta.get("scale_unit") == "°" else (0.0, 0.0)
        samples, inside = sample_localizer(scale_to_unit(localizer.data), starts, ends, width,
                                           (float(loc_meta["scale_x"]), float(loc_meta["scale_y"])), offset)
        if inside < 0.5:
            notes.append(f"only {inside:.0%} of the A-scans lie on the localizer image: SLO is None")
        else:
            slo = samples
            if inside < 1:
                notes.append(f"{1 - inside:.0%} of the A-scans lie outside the localizer: SLO 0 there")
    boundaries = _layer_boundaries(volume)
    labels = None
    if boundaries:
        labels = labels_from_boundaries(boundaries, oct_volume.shape[0])
        missing = [BOUNDARY_NAMES[i] for i in range(len(BOUNDARY_NAMES)) if i not in boundaries]
        if missing:
            notes.append(f"layer annotations lack boundaries {', '.join(missing)}: labels use only the others")
    else:
        notes.append("no layer annotations in the file: labels are None")
    return Eye(
        oct=oct_volume, spacing=spacing, subject=subject or path.stem,
        laterality=laterality or _laterality(volume.laterality, path), labels=labels, slo=slo,
        bscan_positions=positions,
        meta={"source": str(path), "import": "spectralis",
              "label_boundaries": [BOUNDARY_NAMES[i] for i in sorted(boundaries)], "import_notes": notes},
    )
