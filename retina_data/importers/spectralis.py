"""Import of Heidelberg Spectralis exports (``.vol``, ``.e2e``, XML) through ``eyepy``.

The export is read by eyepy and mapped to an :class:`Eye` as every eyepy volume is (see
:mod:`retina_data.importers.eyepy_volumes`: display intensities, spacing, B-scan positions
from the start points, the localizer sampled at every A-scan as the SLO, labels from the layer
annotations through :data:`HEYEX_BOUNDARIES`). Line, circle and radial ``.vol`` scans are
refused: they are not volumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.importers.eyepy_volumes import BoundaryTable, eye_from_volume, eyepy_module, read_with_eyepy

HEYEX_BOUNDARIES: BoundaryTable = {
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


def read_heyex(path: str | Path) -> Any:
    """eyepy's ``EyeVolume`` of a ``.vol``, ``.e2e`` or XML export (file or folder)."""
    eyepy = eyepy_module("Spectralis files")
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
    return read_with_eyepy(reader, path, "Spectralis export")


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
        raise DataError(
            f"{path}: scan pattern {pattern} ({NOT_VOLUME_PATTERNS[pattern]}) is not a volume scan; "
            "expected a raster volume scan (pattern 3 or 4)"
        )


def import_spectralis(
    path: str | Path,
    subject: str | None = None,
    laterality: str | None = None,
    spacing: tuple[float, float, float] | None = None,
) -> Eye:
    """An :class:`Eye` from a Spectralis export (see :mod:`retina_data.importers.eyepy_volumes`
    for the mapping, :data:`HEYEX_BOUNDARIES` for the layers).

    Args:
        path: ``.vol``, ``.e2e`` or ``.xml`` file (or the XML export's folder).
        subject: subject id; defaults to the file name without suffix.
        laterality: ``"OD"``/``"OS"``, overriding the file's.
        spacing: ``(dH, dW, dD)`` in mm, overriding the file's (needed when it has none).
    """
    path = Path(path)
    return eye_from_volume(
        read_heyex(path), path, HEYEX_BOUNDARIES, "spectralis", subject=subject, laterality=laterality, spacing=spacing
    )
