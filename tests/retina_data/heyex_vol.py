"""A minimal writer of Heidelberg Spectralis ``.vol`` files, for the import tests.

Layout (little endian), as published for HEYEX "HSF-OCT-103" raw exports and as read by
eyepy's ``HeVolReader``:

- file header, 2048 bytes: Version ``char[12]``, SizeX, NumBScans, SizeZ ``uint32``,
  ScaleX, Distance, ScaleZ ``double`` (mm), SizeXSlo, SizeYSlo ``uint32``, ScaleXSlo,
  ScaleYSlo ``double``, FieldSizeSlo ``uint32``, ScanFocus ``double``, ScanPosition
  ``char[4]`` ("OD"/"OS"), ExamTime ``uint64``, ScanPattern ``int32``, BScanHdrSize
  ``uint32``, ID, ReferenceID ``char[16]``, PID ``uint32``, PatientID ``char[24]``, DOB
  ``double``, VID ``uint32``, VisitID ``char[24]``, VisitDate ``double``, GridType,
  GridOffset, GridType1, GridOffset1 ``uint32``, ProgID ``char[34]``, zero padding;
- the SLO image, SizeYSlo x SizeXSlo ``uint8``;
- per B-scan a header of BScanHdrSize bytes: Version ``char[12]``, BScanHdrSize
  ``uint32``, StartX, StartY, EndX, EndY ``double`` (mm on the SLO), NumSeg ``int32``,
  OffSeg ``int32`` (256), Quality ``float``, Shift ``int32``, IVTrafo ``float[6]``, 168
  spare bytes; then NumSeg x SizeX ``float`` boundary rows at OffSeg (FLT_MAX where not
  segmented), zero padding; then the B-scan, SizeZ x SizeX ``float`` reflectivities.

Boundary vectors are stored in the HEYEX order below. Reflectivities are linear; viewers
show ``(ln(r + 2.44e-4) + 8.3) / 8.285``, so :func:`write_vol` takes display values in
``[0, 1]`` and stores their inverse.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

FILE_HEADER_SIZE = 2048
BSCAN_HEADER_SIZE = 4096
SEGMENTATION_ORDER = (
    "ILM",
    "BM",
    "RNFL",
    "GCL",
    "IPL",
    "INL",
    "OPL",
    "ONL",
    "ELM",
    "IOS",
    "OPT",
    "CHO",
    "VIT",
    "ANT",
    "PR1",
    "PR2",
    "RPE",
)
NOT_SEGMENTED = np.finfo(np.float32).max


def display_to_reflectivity(display: np.ndarray) -> np.ndarray:
    """Linear reflectivity whose HEYEX display value is ``display`` (in ``[0, 1]``)."""
    return (np.exp(np.asarray(display, dtype=np.float64) * 8.285 - 8.3) - 2.44e-4).astype(np.float32)


def _text(value: str, size: int) -> bytes:
    return value.encode("ascii").ljust(size, b"\0")[:size]


def write_vol(
    path: Path,
    display: np.ndarray,
    slo: np.ndarray,
    *,
    scale_x: float,
    distance: float,
    scale_z: float,
    slo_scale: tuple[float, float],
    laterality: str = "OD",
    start: tuple[float, float] = (1.0, 1.0),
    layers: dict[str, np.ndarray] | None = None,
    scan_pattern: int = 3,
) -> Path:
    """Write a horizontal raster scan (``scan_pattern`` 3; another value only labels the header).

    Args:
        display: B-scans ``[D, H, W]`` as display values in ``[0, 1]``.
        slo: localizer ``[rows, cols]`` uint8.
        scale_x, distance, scale_z: A-scan spacing, B-scan spacing, pixel height (mm).
        slo_scale: SLO pixel size (x, y) in mm.
        start: (x, y) in mm of the first A-scan of the first B-scan; B-scan ``d`` runs from
            ``(x0, y0 + d * distance)`` to ``(x0 + (W - 1) * scale_x, y0 + d * distance)``.
        layers: Heyex boundary name -> rows ``[D, W]``; the others are not segmented.
    """
    depth, height, width = display.shape
    header = bytearray(FILE_HEADER_SIZE)
    struct.pack_into(
        "<12s3I3d2I2dId4sQiI16s16sI24sdI24sd4I34s",
        header,
        0,
        _text("HSF-OCT-103", 12),
        width,
        depth,
        height,
        scale_x,
        distance,
        scale_z,
        slo.shape[1],
        slo.shape[0],
        slo_scale[0],
        slo_scale[1],
        30,
        0.0,
        _text(laterality, 4),
        0,
        scan_pattern,
        BSCAN_HEADER_SIZE,
        _text("1", 16),
        _text("", 16),
        7,
        _text("test", 24),
        0.0,
        1,
        _text("visit", 24),
        0.0,
        0,
        0,
        0,
        0,
        _text("", 34),
    )
    segments = np.full((depth, len(SEGMENTATION_ORDER), width), NOT_SEGMENTED, dtype=np.float32)
    for name, rows in (layers or {}).items():
        segments[:, SEGMENTATION_ORDER.index(name)] = rows
    num_seg = len(SEGMENTATION_ORDER) if layers else 0
    parts = [bytes(header), np.ascontiguousarray(slo, dtype=np.uint8).tobytes()]
    for d in range(depth):
        y = start[1] + d * distance
        bscan_header = bytearray(BSCAN_HEADER_SIZE)
        struct.pack_into(
            "<12sI4d2ifi6f",
            bscan_header,
            0,
            _text("HSF-BS-103", 12),
            BSCAN_HEADER_SIZE,
            start[0],
            y,
            start[0] + (width - 1) * scale_x,
            y,
            num_seg,
            256,
            30.0,
            0,
            *([0.0] * 6),
        )
        seg_bytes = segments[d, :num_seg].tobytes()
        bscan_header[256 : 256 + len(seg_bytes)] = seg_bytes
        parts += [bytes(bscan_header), display_to_reflectivity(display[d]).tobytes()]
    path.write_bytes(b"".join(parts))
    return path
