"""An :class:`Eye` from an ``eyepy`` ``EyeVolume``, whatever format eyepy read it from.

``eyepy`` is an optional dependency (``pip install 'resa-oct[spectralis]'``), imported only
when a file is read. The mapping, shared by the Spectralis and the Duke readers:

- OCT: eyepy's display intensities (``volume.data``, its log transform for ``.vol``) as
  ``[H, W, D]`` float32 in ``[0, 1]``.
- spacing ``(dH, dW, dD)`` = ``(scale_y, scale_x, scale_z)`` in mm; volumes that store no mm
  scale (E2E) need ``spacing`` from the caller.
- B-scan positions: the distance (mm) of each B-scan's start point from the first one,
  across the scan lines (see :func:`retina_data.importers.localizer.bscan_positions`).
- SLO ``[W, D]``: the localizer sampled (bilinear) at every A-scan, whose localizer
  position lies on the line from its B-scan's start point to its end point. Formats without
  a localizer get none: eyepy then makes one by projecting the OCT, which would hand the
  B-scans themselves to a model as "SLO".
- labels from the layer annotations, boundary by boundary through a table ``{our boundary:
  the format's layer names}``; an annotation that is all NaN or all 0 (eyepy writes 0 for an
  unsegmented layer) is absent. With some boundaries missing, the region between two
  present boundaries takes the class just below the upper one, and
  ``meta["label_boundaries"]`` lists the boundaries used. Without any annotation the labels
  are ``None``.

Everything the import could not map is said in ``meta["import_notes"]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.importers.localizer import ascan_points, bscan_positions, sample_localizer
from retina_data.labels import BOUNDARY_NAMES, labels_from_boundaries
from retina_data.preprocessing import scale_to_unit

INSTALL_HINT = "install eyepy (pip install 'resa-oct[spectralis]')"

BoundaryTable = dict[str, tuple[str, ...]]
"""Our boundary (see :data:`retina_data.labels.BOUNDARY_NAMES`) -> a format's layer names,
first present wins; every one of our boundaries is a key (an empty tuple: none)."""


def eyepy_module(what: str) -> Any:
    """The ``eyepy`` module, or a :class:`DataError` saying that reading ``what`` needs it."""
    try:
        import eyepy
    except ImportError as exc:
        raise DataError(f"reading {what} needs eyepy: {INSTALL_HINT}") from exc
    logging.getLogger("eyepy").setLevel(logging.ERROR)
    return eyepy


def read_with_eyepy(reader: Any, path: Path, what: str) -> Any:
    """``reader(path)``, any failure of a malformed file turned into one-line :class:`DataError`."""
    try:
        return reader(path)
    except Exception as exc:  # eyepy, construct and scipy raise many types for malformed files
        reason = " ".join(str(exc).split())  # construct's messages span several lines
        raise DataError(
            f"{path}: cannot read {what} (truncated or another format?): {type(exc).__name__}: {reason}"
        ) from exc


def laterality_of(value: Any, path: Path) -> str:
    """``"OD"``/``"OS"`` from a file's laterality text (``OD``, ``R``, ``right`` ...)."""
    text = str(value).upper()
    for token, laterality in (("OD", "OD"), ("OS", "OS"), ("RIGHT", "OD"), ("LEFT", "OS")):
        if token in text:
            return laterality
    if text.strip() in ("R", "L"):
        return "OD" if text.strip() == "R" else "OS"
    raise DataError(f"{path}: laterality {value!r} in the file is not OD or OS; give --laterality")


def display_intensities(volume: Any, notes: list[str]) -> np.ndarray:
    """B-scans ``[D, H, W]`` in ``[0, 1]``: eyepy's display transform of the stored values.

    ``.vol`` files store linear reflectivities in ``[0, 1]`` (and FLT_MAX where invalid);
    a file whose values exceed that range holds display values already (as some converters
    write), which are then scaled by their range instead of saturating.
    """
    if volume.meta.get("intensity_transform") == "vol":
        raw = volume.raw_data
        valid = raw < 3.0e38
        if valid.any() and raw[valid].max() > 1:
            notes.append(
                f"B-scan values up to {raw[valid].max():.4g} exceed the .vol reflectivity range "
                "[0, 1]: taken as display intensities and scaled by their range"
            )
            return scale_to_unit(np.where(valid, raw, 0))
    return scale_to_unit(np.asarray(volume.data))


def bscan_lines(volume: Any) -> tuple[np.ndarray, np.ndarray]:
    """Start and end point ``[D, 2]`` (x, y) of every B-scan on the localizer, in its position unit."""
    metas = volume.meta["bscan_meta"]
    starts = np.array([m["start_pos"] for m in metas], dtype=np.float64)
    ends = np.array([m["end_pos"] for m in metas], dtype=np.float64)
    return starts, ends


def layer_boundaries(volume: Any, table: BoundaryTable) -> dict[int, np.ndarray]:
    """Boundary index -> rows ``[W, D]`` of each of our boundaries present in the annotations."""
    layers = {name.upper(): layer.data for name, layer in volume.layers.items()}
    boundaries: dict[int, np.ndarray] = {}
    for index, ours in enumerate(BOUNDARY_NAMES):
        for name in table[ours]:
            data = layers.get(name.upper())
            if data is None:
                continue
            data = np.asarray(data, dtype=np.float64)
            finite = np.isfinite(data)
            if not finite.any() or np.all(data[finite] == 0):
                continue
            boundaries[index] = data.T
            break
    return boundaries


def _slo(volume: Any, width: int, notes: list[str]) -> np.ndarray | None:
    """The localizer sampled at every A-scan ``[W, D]``, or ``None`` (with a note) when it misses them."""
    starts, ends = bscan_lines(volume)
    loc_meta = volume.localizer.meta
    offset = (15.0, 15.0) if loc_meta.get("scale_unit") == "°" else (0.0, 0.0)
    samples, inside = sample_localizer(
        scale_to_unit(volume.localizer.data),
        ascan_points(starts, ends, width),
        (float(loc_meta["scale_x"]), float(loc_meta["scale_y"])),
        offset,
    )
    if inside < 0.5:
        notes.append(f"only {inside:.0%} of the A-scans lie on the localizer image: SLO is None")
        return None
    if inside < 1:
        notes.append(f"{1 - inside:.0%} of the A-scans lie outside the localizer: SLO 0 there")
    return samples


def eye_from_volume(
    volume: Any,
    path: Path,
    table: BoundaryTable,
    source: str,
    *,
    subject: str | None = None,
    laterality: str | None = None,
    spacing: tuple[float, float, float] | None = None,
    has_localizer: bool = True,
) -> Eye:
    """An :class:`Eye` from eyepy's ``volume`` read from ``path`` (see the module doc for the mapping).

    Args:
        table: our boundaries -> the format's layer names.
        source: the importer's name, stored as ``meta["import"]``.
        subject: subject id; defaults to the file name without suffix.
        laterality: ``"OD"``/``"OS"``, overriding the file's.
        spacing: ``(dH, dW, dD)`` in mm, overriding the file's (needed when it has none).
        has_localizer: whether the format holds a localizer image (else the SLO is ``None``).
    """
    notes: list[str] = []
    data = display_intensities(volume, notes)
    oct_volume = np.ascontiguousarray(data.transpose(1, 2, 0))
    depth, _, width = data.shape
    if spacing is None:
        if volume.meta.get("scale_unit") != "mm":
            raise DataError(
                f"{path}: the file gives no spacing in mm (unit {volume.meta.get('scale_unit')!r}); "
                "give --spacing dH dW dD"
            )
        spacing = (float(volume.scale_y), float(volume.scale_x), float(volume.scale_z))
    starts, ends = bscan_lines(volume)
    pos_unit = volume.meta["bscan_meta"][0].get("pos_unit", "mm")
    positions = bscan_positions(starts, ends) if pos_unit == "mm" else None
    if positions is None:
        positions = np.arange(depth) * spacing[2]
        notes.append(
            f"B-scan start points give no increasing positions in mm (unit {pos_unit!r}); "
            f"assumed evenly spaced at {spacing[2]} mm"
        )
    slo = None
    if not has_localizer or getattr(volume, "localizer", None) is None:
        notes.append("no localizer image: SLO is None")
    else:
        slo = _slo(volume, width, notes)
    boundaries = layer_boundaries(volume, table)
    labels = None
    if boundaries:
        labels = labels_from_boundaries(boundaries, oct_volume.shape[0])
        missing = [BOUNDARY_NAMES[i] for i in range(len(BOUNDARY_NAMES)) if i not in boundaries]
        if missing:
            notes.append(f"layer annotations lack boundaries {', '.join(missing)}: labels use only the others")
    else:
        notes.append("no layer annotations in the file: labels are None")
    return Eye(
        oct=oct_volume,
        spacing=spacing,
        subject=subject or path.stem,
        laterality=laterality or laterality_of(volume.laterality, path),
        labels=labels,
        slo=slo,
        bscan_positions=positions,
        meta={
            "source": str(path),
            "import": source,
            "label_boundaries": [BOUNDARY_NAMES[i] for i in sorted(boundaries)],
            "import_notes": notes,
        },
    )
