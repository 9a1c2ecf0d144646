"""Deliberate faults injected into a written tree, for the validation tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

PIXDIM_OFFSET = 76
"""Byte offset of ``pixdim[8]`` (float32) in a NIfTI-1 header; ``pixdim[1..3]`` are the zooms."""


def rewrite_array(path: Path, change) -> None:
    """Replace the NIfTI's array by ``change(array)``, keeping its header otherwise."""
    image = nib.load(str(path))
    array = change(np.asanyarray(image.dataobj).copy())
    header = image.header.copy()
    header.set_data_dtype(array.dtype)
    nib.save(nib.Nifti1Image(array, image.affine, header), str(path))


def set_header_zoom(path: Path, axis: int, value: float) -> None:
    """Overwrite one zoom (voxel size) in the gzipped NIfTI header bytes."""
    data = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<f", data, PIXDIM_OFFSET + 4 * (axis + 1), value)
    path.write_bytes(gzip.compress(bytes(data)))


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut the file to a fraction of its bytes, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
