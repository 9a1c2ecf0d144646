"""Import of DICOM Ophthalmic Tomography (OPT) images with their SLO, through ``pydicom``.

``pydicom`` is an optional dependency (``pip install 'resa-oct[dicom]'``), imported only when
a file is read. An OPT instance (SOP class :data:`OPT_SOP_CLASS`) is multi-frame, one frame
per B-scan ``[rows = H, columns = W]``. Mapping to an :class:`Eye`:

- OCT: the frames as ``[H, W, D]`` float32, samples divided by ``2**BitsStored - 1``.
- spacing ``(dH, dW)`` from the Pixel Measures (per frame or shared; every frame must agree),
  ``dD`` the median distance between B-scans.
- B-scan positions from each frame's Ophthalmic Frame Location: its Reference Coordinates
  are (row, column) points on the referenced localizer (SLO) image, with (0, 0) the top left
  corner of its top left pixel; two points are the ends of a linear B-scan, ``W`` points
  one per A-scan. They become mm with the localizer's Pixel Spacing; the position of a
  B-scan is its distance from the first one across the scan line
  (:func:`retina_data.importers.localizer.bscan_positions`). Without the localizer image its
  pixel size is taken as the B-scan length ``(W - 1) * dW`` over the scan line's length in
  its pixels (square pixels assumed), with a note.
- laterality from Image Laterality (``R`` -> OD, ``L`` -> OS) unless the caller gives it.
- SLO ``[W, D]``: the referenced Ophthalmic Photography image (given, or found in the OPT
  file's folder by its SOP Instance UID), grey or colour (then its luminance), sampled
  bilinearly at every A-scan's point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.importers.localizer import ascan_points, bscan_positions, sample_localizer
from retina_data.importers.stacks import luminance

OPT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
"""Ophthalmic Tomography Image Storage."""
PHOTOGRAPHY_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit",
}
INSTALL_HINT = "install pydicom (pip install 'resa-oct[dicom]')"
LATERALITY_CODES = {"R": "OD", "L": "OS"}


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:
        raise DataError(f"reading DICOM files needs pydicom: {INSTALL_HINT}") from exc
    return pydicom


def read_dicom(path: Path, header_only: bool = False) -> Any:
    """The pydicom ``Dataset`` of ``path`` (without the pixels when ``header_only``)."""
    pydicom = _pydicom()
    if not path.is_file():
        raise DataError(f"{path}: DICOM file not found")
    try:
        dataset = pydicom.dcmread(path, stop_before_pixels=header_only)
        for _ in dataset.iterall():  # pydicom parses values lazily: a damaged one fails here, not later
            pass
        return dataset
    except Exception as exc:  # pydicom raises InvalidDicomError, EOFError, ValueError ... for bad files
        raise DataError(
            f"{path}: cannot read DICOM (not a DICOM file or truncated?): "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from exc


def _pixels(dataset: Any, path: Path) -> np.ndarray:
    """Pixel data in ``[0, 1]`` float32, samples divided by ``2**BitsStored - 1``."""
    try:
        array = np.asarray(dataset.pixel_array)
    except Exception as exc:  # missing or undecodable pixel data
        raise DataError(f"{path}: cannot decode the pixel data: {type(exc).__name__}: {exc}") from exc
    if not np.issubdtype(array.dtype, np.integer) or int(getattr(dataset, "PixelRepresentation", 0)) != 0:
        raise DataError(
            f"{path}: {array.dtype} pixels (Pixel Representation "
            f"{getattr(dataset, 'PixelRepresentation', None)}); expected unsigned integer samples"
        )
    top = float(2 ** int(dataset.get("BitsStored", array.dtype.itemsize * 8)) - 1)
    return (array.astype(np.float32) / np.float32(top)).astype(np.float32)


def _functional_group(dataset: Any, frame: Any, keyword: str) -> Any:
    """The first item of functional group ``keyword`` of a frame, else of the shared groups, else ``None``."""
    for groups in (frame, *dataset.get("SharedFunctionalGroupsSequence", [])):
        if groups is not None and keyword in groups and len(groups[keyword].value):
            return groups[keyword].value[0]
    return None


def _frames(dataset: Any, path: Path) -> list[Any]:
    frames = int(dataset.get("NumberOfFrames", 1))
    if frames < 2:
        raise DataError(f"{path}: {frames} frame(s); expected a volume of several B-scans (a line scan is not one)")
    per_frame = list(dataset.get("PerFrameFunctionalGroupsSequence", []))
    if len(per_frame) != frames:
        raise DataError(
            f"{path}: {len(per_frame)} Per-frame Functional Groups items for {frames} frames; expected one per frame"
        )
    return per_frame


def _pixel_spacing(dataset: Any, frames: list[Any], path: Path) -> tuple[float, float]:
    """``(dH, dW)`` in mm, the same for every frame."""
    spacings = []
    for index, frame in enumerate(frames):
        measures = _functional_group(dataset, frame, "PixelMeasuresSequence")
        if measures is None or "PixelSpacing" not in measures:
            raise DataError(
                f"{path}: frame {index + 1} has no Pixel Measures Pixel Spacing; expected row and column spacing in mm"
            )
        values = [float(v) for v in measures.PixelSpacing]
        if len(values) != 2:
            raise DataError(
                f"{path}: frame {index + 1} has {len(values)} Pixel Spacing values; expected row and "
                "column spacing in mm"
            )
        spacings.append((values[0], values[1]))
    if any(s != spacings[0] for s in spacings):
        other = next(i for i, s in enumerate(spacings) if s != spacings[0])
        raise DataError(
            f"{path}: frame {other + 1} has pixel spacing {spacings[other]} mm but frame 1 "
            f"{spacings[0]}; expected one spacing for the volume"
        )
    return spacings[0]


def _frame_locations(dataset: Any, frames: list[Any], width: int, path: Path) -> tuple[str, np.ndarray]:
    """The referenced image's SOP Instance UID and the A-scan points ``[W, D, 2]`` (column, row)
    on it in pixels, (0, 0) the top left corner of its top left pixel."""
    uids, starts, ends, points = [], [], [], []
    for index, frame in enumerate(frames):
        location = frame.get("OphthalmicFrameLocationSequence")
        if not location:
            raise DataError(
                f"{path}: frame {index + 1} has no Ophthalmic Frame Location Sequence; expected "
                "each B-scan's line on the localizer"
            )
        item = location[0]
        uids.append(str(item.get("ReferencedSOPInstanceUID", "")))
        coordinates = np.asarray(item.get("ReferenceCoordinates", []), dtype=np.float64)
        pairs = coordinates.size // 2
        if coordinates.size % 2 or pairs not in (2, width):
            raise DataError(
                f"{path}: frame {index + 1} has {coordinates.size} Reference Coordinates; expected "
                f"row, column pairs for the 2 ends of the B-scan or its {width} A-scans"
            )
        row_col = coordinates.reshape(pairs, 2)
        xy = row_col[:, ::-1]
        starts.append(xy[0])
        ends.append(xy[-1])
        points.append(None if pairs == 2 else xy)
    if len(set(uids)) != 1:
        raise DataError(f"{path}: frames refer to {len(set(uids))} different localizer images; expected one")
    linear = ascan_points(np.array(starts), np.array(ends), width)
    stacked = np.stack([linear[:, d] if p is None else p for d, p in enumerate(points)], axis=1)
    return uids[0], stacked


def _find_localizer(path: Path, uid: str) -> Path | None:
    """The file in ``path``'s folder whose SOP Instance UID is ``uid``."""
    for candidate in sorted(path.parent.iterdir()):
        if candidate == path or not candidate.is_file():
            continue
        try:
            header = _pydicom().dcmread(candidate, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        except Exception:  # any file of the folder that is not DICOM is skipped
            continue
        if str(header.get("SOPInstanceUID", "")) == uid:
            return candidate
    return None


def _read_localizer(slo_path: Path, uid: str) -> tuple[np.ndarray, tuple[float, float] | None]:
    """The localizer image ``[rows, cols]`` in ``[0, 1]`` and its ``(row, column)`` pixel spacing in mm."""
    dataset = read_dicom(slo_path)
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class not in PHOTOGRAPHY_SOP_CLASSES:
        raise DataError(
            f"{slo_path}: SOP class {sop_class or 'none'}; expected an Ophthalmic Photography image (the SLO)"
        )
    if str(dataset.get("SOPInstanceUID", "")) != uid:
        raise DataError(
            f"{slo_path}: SOP Instance UID {dataset.get('SOPInstanceUID')} is not the localizer the "
            f"frames refer to ({uid})"
        )
    image = _pixels(dataset, slo_path)
    if image.ndim == 3 and image.shape[-1] == 3:
        image = luminance(image)
    if image.ndim != 2:
        raise DataError(f"{slo_path}: localizer of shape {image.shape}; expected one grey or RGB image")
    spacing = dataset.get("PixelSpacing")
    return image, None if spacing is None else (float(spacing[0]), float(spacing[1]))


def import_dicom_oct(
    path: str | Path, subject: str, laterality: str | None = None, slo: str | Path | None = None
) -> Eye:
    """An :class:`Eye` from a DICOM OPT file (see the module doc for the mapping).

    Args:
        path: the OPT instance.
        subject: subject id.
        laterality: ``"OD"``/``"OS"``, overriding Image Laterality.
        slo: the referenced Ophthalmic Photography file; default: found in ``path``'s folder.
    """
    path = Path(path)
    dataset = read_dicom(path)
    sop_class = str(dataset.get("SOPClassUID", ""))
    if sop_class != OPT_SOP_CLASS:
        raise DataError(f"{path}: SOP class {sop_class or 'none'}; expected Ophthalmic Tomography ({OPT_SOP_CLASS})")
    frames = _frames(dataset, path)
    bscans = _pixels(dataset, path)
    if bscans.shape[0] != len(frames) or bscans.ndim != 3:
        raise DataError(
            f"{path}: pixel data of shape {bscans.shape} for {len(frames)} frames; expected "
            "[frames, rows, columns] grey B-scans"
        )
    oct_volume = np.ascontiguousarray(bscans.transpose(1, 2, 0))
    width = oct_volume.shape[1]
    d_h, d_w = _pixel_spacing(dataset, frames, path)
    uid, points = _frame_locations(dataset, frames, width, path)
    notes: list[str] = []
    slo_path = Path(slo) if slo is not None else _find_localizer(path, uid)
    localizer, localizer_spacing = (None, None) if slo_path is None else _read_localizer(slo_path, uid)
    if localizer is None:
        notes.append(f"localizer {uid} not found beside the file (give --slo): SLO is None")
    starts, ends = points[0], points[-1]
    if localizer_spacing is None:
        length = float(np.median(np.linalg.norm(ends - starts, axis=1)))
        if length == 0:
            raise DataError(f"{path}: the B-scans' lines on the localizer have no length; expected their ends")
        localizer_spacing = ((width - 1) * d_w / length,) * 2
        notes.append(
            f"localizer pixel size taken from the B-scan length: {localizer_spacing[0]:.5g} mm (square pixels assumed)"
        )
    scale_xy = np.array([localizer_spacing[1], localizer_spacing[0]])
    positions = bscan_positions(starts * scale_xy, ends * scale_xy)
    if positions is None:
        raise DataError(
            f"{path}: the frames' locations are not parallel B-scans in increasing order; expected a raster volume scan"
        )
    slo_image = None
    if localizer is not None:
        slo_image, inside = sample_localizer(localizer, points, (1.0, 1.0), (-0.5, -0.5))
        if inside < 1:
            notes.append(f"{1 - inside:.0%} of the A-scans lie outside the localizer: SLO 0 there")
    if laterality is None:
        code = str(dataset.get("ImageLaterality", "")).upper()
        if code not in LATERALITY_CODES:
            raise DataError(f"{path}: Image Laterality {code or 'missing'!r}; expected R or L, or give --laterality")
        laterality = LATERALITY_CODES[code]
    spacing = (d_h, d_w, float(np.median(np.diff(positions))))
    return Eye(
        oct=oct_volume,
        spacing=spacing,
        subject=subject,
        laterality=laterality,
        labels=None,
        slo=slo_image,
        bscan_positions=positions,
        meta={
            "source": str(path),
            "import": "dicom-opt",
            "import_notes": [*notes, "DICOM OPT holds no layer annotations: labels are None"],
        },
    )
