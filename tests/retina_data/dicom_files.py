"""Minimal valid DICOM Ophthalmic Tomography and Ophthalmic Photography files, written with pydicom.

The OPT file: ``D`` frames ``[H, W]`` of 16-bit samples (12 stored), Pixel Measures in the
shared functional groups, one Ophthalmic Frame Location per frame referring to the SLO.
The SLO: an 8-bit grey Ophthalmic Photography image whose value is ``col + 2 * row`` at the
centre of pixel ``(row, col)``, so bilinear sampling of it is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

OPT_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.4"
OP8_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
SLO_SHAPE = (60, 80)


def _base(sop_class: str, uid: str, modality: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, uid, modality
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "P01", generate_uid(), generate_uid()
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    return ds


def ramp_slo() -> np.ndarray:
    rows, cols = np.mgrid[0 : SLO_SHAPE[0], 0 : SLO_SHAPE[1]]
    return (cols + 2 * rows).astype(np.uint8)


def write_slo(path: Path, uid: str, pixel_spacing: tuple[float, float] | None = (0.02, 0.03)) -> Path:
    """An Ophthalmic Photography 8-bit SLO; ``pixel_spacing`` (row, column) in mm."""
    ds = _base(OP8_CLASS, uid, "OP")
    image = ramp_slo()
    ds.Rows, ds.Columns = image.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    ds.PixelData = image.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_opt(
    path: Path,
    bscans: np.ndarray,
    lines: np.ndarray,
    slo_uid: str,
    *,
    pixel_spacing=(0.0039, 0.06),
    laterality: str | None = "L",
    per_frame_spacing: list | None = None,
    frame_items: int | None = None,
    locations: bool = True,
) -> Path:
    """An OPT file of ``bscans [D, H, W]`` (uint16, 12 bits stored) whose frame ``d`` lies on
    ``lines[d]`` = Reference Coordinates (row, column pairs) on the SLO ``slo_uid``."""
    ds = _base(OPT_CLASS, generate_uid(), "OPT")
    depth, height, width = bscans.shape
    ds.NumberOfFrames, ds.Rows, ds.Columns = depth, height, width
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    if laterality is not None:
        ds.ImageLaterality = laterality
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = list(pixel_spacing), 0.01
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for d in range(depth if frame_items is None else frame_items):
        frame = Dataset()
        if locations:
            location = Dataset()
            location.ReferencedSOPClassUID, location.ReferencedSOPInstanceUID = OP8_CLASS, slo_uid
            location.ReferenceCoordinates = [float(v) for v in np.ravel(lines[d])]
            location.OphthalmicImageOrientation = "LINEAR"
            frame.OphthalmicFrameLocationSequence = Sequence([location])
        if per_frame_spacing is not None:
            own = Dataset()
            own.PixelSpacing, own.SliceThickness = list(per_frame_spacing[d]), 0.01
            frame.PixelMeasuresSequence = Sequence([own])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(bscans, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
