"""Preprocessing of OCT eyes: flattening at Bruch's membrane, normalisation, cropping, subsampling.

Every function takes and returns an :class:`~retina_data.eye.Eye` (or plain arrays for the
array-level helpers) and keeps the geometry exact: cropping updates B-scan positions and
keeps the SLO columns that lie between the kept B-scans; subsampling keeps positions.

Bruch's membrane (BM) is the bottom of label 11 (RPE): the BM row of an A-scan is the first
row below its lowest RPE voxel, i.e. the first choroid row, matching the boundary convention
of :mod:`retina_data.labels` (boundary ``i`` lies between class ``i`` and ``i + 1``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.files import refuse_existing, staged_folder
from retina_data.tree import eye_files, list_eyes, read_eye, write_eye

RPE_LABEL = 11


def bm_rows_from_labels(labels: np.ndarray, rpe_label: int = RPE_LABEL) -> np.ndarray:
    """BM row per A-scan ``[W, D]`` (float) from labels ``[H, W, D]``: one below the lowest RPE voxel.

    A-scans without any RPE voxel take the BM row of the nearest A-scan (same B-scan first,
    then the nearest B-scan) that has one; a volume without RPE raises :class:`DataError`.
    """
    labels = np.asarray(labels)
    height = labels.shape[0]
    is_rpe = labels == rpe_label
    found = is_rpe.any(axis=0)
    if not found.any():
        raise DataError(f"labels hold no RPE (label {rpe_label}) voxel: cannot locate Bruch's membrane")
    lowest = height - 1 - np.argmax(is_rpe[::-1], axis=0)
    rows = (lowest + 1).astype(np.float64)
    if found.all():
        return rows
    return _fill_missing_rows(rows, found)


def _fill_missing_rows(rows: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Copy into A-scans where ``found`` is false the value of the nearest A-scan where it is true."""
    from scipy.ndimage import distance_transform_edt

    _, (nearest_w, nearest_d) = distance_transform_edt(~found, return_indices=True)
    return rows[nearest_w, nearest_d]


BLOCK_VOXELS = 1 << 24
"""Voxels shifted at once by :func:`shift_ascans`: bounds its temporaries to a few hundred MB."""


def shift_ascans(
    volume: np.ndarray, shifts: np.ndarray, *, order: Literal[0, 1], fill: Literal["zero", "edge"]
) -> np.ndarray:
    """Move every A-scan of ``volume [H, W, D]`` down by ``shifts [W, D]`` rows (up when negative).

    ``order=1`` interpolates linearly for fractional shifts (intensities); ``order=0`` rounds
    each shift to whole rows (labels: values are moved, never blended). Rows shifted in from
    outside the volume take 0 (``fill="zero"``) or the nearest edge row's value (``"edge"``).
    Large volumes are shifted a block of B-scans at a time.
    """
    volume = np.asarray(volume)
    shifts = np.asarray(shifts, dtype=np.float64)
    if shifts.shape != volume.shape[1:]:
        raise ValueError(f"shifts {shifts.shape} must be [W, D] = {volume.shape[1:]}")
    result = np.empty_like(volume)
    block = max(1, BLOCK_VOXELS // max(1, volume.shape[0] * volume.shape[1]))
    for start in range(0, volume.shape[2], block):
        part = slice(start, start + block)
        result[:, :, part] = _shift_block(volume[:, :, part], shifts[:, part], order, fill)
    return result


def _shift_block(volume: np.ndarray, shifts: np.ndarray, order: int, fill: str) -> np.ndarray:
    """:func:`shift_ascans` of one block ``[H, W, d]`` with its shifts ``[W, d]``."""
    height = volume.shape[0]
    source = np.arange(height, dtype=np.float64)[:, None, None] - shifts[None]
    if order == 0:
        source = np.rint(source)
    lower = np.floor(source)
    weight = (source - lower).astype(np.float32)
    lower = lower.astype(np.int64)

    def gather(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = (index >= 0) & (index < height)
        values = np.take_along_axis(volume, np.clip(index, 0, height - 1), axis=0)
        return values, inside

    below, inside_below = gather(lower)
    if order == 0:
        result, inside = below, inside_below
    else:
        above, inside_above = gather(lower + 1)
        result = below.astype(np.float32) * (1.0 - weight) + above.astype(np.float32) * weight
        inside = inside_below & (inside_above | (weight == 0))
    if fill == "zero":
        result = np.where(inside, result, 0)
    return result.astype(volume.dtype, copy=False)


def flatten_at_bm(eye: Eye, bm_rows: np.ndarray | None = None, target_row: int | None = None) -> Eye:
    """Shift each A-scan so that Bruch's membrane lies on ``target_row``.

    Args:
        eye: the eye to flatten; its labels locate BM when ``bm_rows`` is not given.
        bm_rows: BM boundary row per A-scan ``[W, D]`` (may be fractional).
        target_row: the row BM is moved to; defaults to the rounded median BM row.

    Returns:
        A new eye: intensities shifted with linear interpolation and 0 filled in, labels
        shifted by whole rows with the edge label (background on top, choroid below) filled
        in. ``meta["flatten_target_row"]`` records the target row.
    """
    if bm_rows is None:
        if eye.labels is None:
            raise DataError(f"eye {eye.eye_id}: no labels to locate Bruch's membrane; give the BM rows [W, D]")
        bm_rows = bm_rows_from_labels(eye.labels)
    bm_rows = np.asarray(bm_rows, dtype=np.float64)
    if bm_rows.shape != eye.shape[1:]:
        raise DataError(f"eye {eye.eye_id}: BM rows must be [W, D] = {eye.shape[1:]}, got {bm_rows.shape}")
    if not np.all(np.isfinite(bm_rows)):
        raise DataError(f"eye {eye.eye_id}: BM rows hold NaN or Inf")
    target_row = int(np.rint(np.median(bm_rows))) if target_row is None else int(target_row)
    if not 0 <= target_row <= eye.shape[0]:
        raise DataError(f"eye {eye.eye_id}: target row {target_row} outside 0..{eye.shape[0]}")
    shifts = target_row - bm_rows
    labels = None
    if eye.labels is not None:
        labels = shift_ascans(eye.labels, shifts, order=0, fill="edge")
    return replace(
        eye,
        oct=shift_ascans(eye.oct, shifts, order=1, fill="zero"),
        labels=labels,
        meta={**eye.meta, "flatten_target_row": target_row},
    )


FLATTEN_SOURCES = ("auto", "labels", "detect", "none")


def flatten_imported(eye: Eye, source: str = "auto") -> Eye:
    """An imported (unflattened) eye flattened at Bruch's membrane, as the tree's ``oct_flat`` files are.

    ``source``: ``labels`` (BM below the RPE label), ``detect`` (BM found in the image, see
    :mod:`retina_data.bm_detection`), ``auto`` (labels when they hold the RPE, else
    detection) or ``none`` (stored as scanned). ``meta["flattening"]`` and a line of
    ``meta["import_notes"]`` say which was used.
    """
    from retina_data.bm_detection import detect_bm_rows

    if source not in FLATTEN_SOURCES:
        raise DataError(f"flatten = {source!r}: expected one of {', '.join(FLATTEN_SOURCES)}")
    if source == "none":
        return _with_note(eye, "none", "not flattened at Bruch's membrane (--flatten none)")
    has_rpe = eye.labels is not None and bool(np.any(eye.labels == RPE_LABEL))
    if source == "labels" or (source == "auto" and has_rpe):
        if eye.labels is None or not has_rpe:
            raise DataError(f"eye {eye.eye_id}: --flatten labels needs labels with the RPE (label {RPE_LABEL})")
        flat = flatten_at_bm(eye, bm_rows_from_labels(eye.labels))
        return _with_note(flat, "labels", "flattened at Bruch's membrane below the RPE label")
    flat = flatten_at_bm(eye, detect_bm_rows(eye.oct, eye.spacing))
    return _with_note(flat, "detected", "flattened at Bruch's membrane found in the image (no RPE labels)")


def _with_note(eye: Eye, how: str, note: str) -> Eye:
    notes = [*eye.meta.get("import_notes", []), note]
    return replace(eye, meta={**eye.meta, "flattening": how, "import_notes": notes})


def scale_to_unit(array: np.ndarray) -> np.ndarray:
    """Intensities to ``[0, 1]`` float32: integers divided by their type's maximum, floats
    already in ``[0, 1]`` kept, other floats mapped from their min..max (NaN/Inf become 0)."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.bool_):
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return (array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)).astype(np.float32)
    data = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(data.min(initial=0.0)), float(data.max(initial=0.0))
    if low >= 0 and high <= 1:
        return data
    return ((data - low) / (high - low)).astype(np.float32) if high > low else np.zeros_like(data)


def normalize_bscans(
    oct_volume: np.ndarray,
    method: Literal["minmax", "percentile"] = "minmax",
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> np.ndarray:
    """Scale every B-scan of ``oct_volume [H, W, D]`` to ``[0, 1]`` on its own.

    ``"minmax"`` maps each B-scan's minimum to 0 and maximum to 1; ``"percentile"`` maps the
    given low/high percentiles and clips outside. A constant B-scan (no range) becomes 0.
    Returns float32 ``[H, W, D]``.
    """
    volume = np.asarray(oct_volume, dtype=np.float32)
    if method == "minmax":
        low = volume.min(axis=(0, 1), keepdims=True)
        high = volume.max(axis=(0, 1), keepdims=True)
    elif method == "percentile":
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise DataError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        low, high = np.percentile(volume, [lo, hi], axis=(0, 1), keepdims=True).astype(np.float32)
    else:
        raise DataError(f"normalisation method must be 'minmax' or 'percentile', got {method!r}")
    span = high - low
    flat = span <= 0
    scaled = (volume - low) / np.where(flat, 1.0, span)
    scaled = np.where(flat, 0.0, scaled)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def normalize_eye(
    eye: Eye, method: Literal["minmax", "percentile"] = "minmax", percentiles: tuple[float, float] = (1.0, 99.0)
) -> Eye:
    """The eye with its OCT normalised B-scan by B-scan (see :func:`normalize_bscans`)."""
    return replace(eye, oct=normalize_bscans(eye.oct, method, percentiles), meta=dict(eye.meta))


def _minmax(array: np.ndarray) -> np.ndarray:
    data = np.asarray(array, dtype=np.float32)
    low, high = float(data.min()), float(data.max())
    return (data - low) / np.float32(high - low) if high > low else np.zeros_like(data)


def minmax_normalise_eye(eye: Eye) -> Eye:
    """The eye with its whole OCT volume and its SLO each mapped from their own min..max to
    ``[0, 1]`` (float32; a constant array becomes 0), as the reference gen-INR does on load."""
    slo = None if eye.slo is None else _minmax(eye.slo)
    return replace(eye, oct=_minmax(eye.oct), slo=slo, meta=dict(eye.meta))


def _window(volume: np.ndarray, start: int, stop: int, axis: int, fill: Literal["zero", "edge"]) -> np.ndarray:
    """``volume[start:stop]`` along ``axis``, padded where the window leaves the volume."""
    size = volume.shape[axis]
    inner = np.take(volume, np.arange(max(start, 0), min(stop, size)), axis=axis)
    before, after = max(0, -start), max(0, stop - size)
    if before == 0 and after == 0:
        return inner
    pad = [(0, 0)] * volume.ndim
    pad[axis] = (before, after)
    if fill == "edge" and inner.shape[axis] > 0:
        return np.pad(inner, pad, mode="edge")
    return np.pad(inner, pad, mode="constant")


def crop(
    eye: Eye,
    rows: tuple[int, int] | None = None,
    columns: tuple[int, int] | None = None,
    bscans: tuple[int, int] | None = None,
) -> Eye:
    """Crop ``[rows, columns, bscans]`` index ranges (``(start, stop)``, stop exclusive).

    Rows outside the volume are padded (OCT with 0, labels with the edge label), so a
    depth window always has the requested height. Columns and B-scans must lie inside the
    volume. B-scan positions follow the kept B-scans; the SLO keeps its rows for the kept
    columns and its columns between the first and last kept B-scan. The origin of the crop
    is added to ``meta["crop_origin"]`` (rows, columns, B-scans).
    """
    height, width, depth = eye.shape
    r0, r1 = rows if rows is not None else (0, height)
    c0, c1 = columns if columns is not None else (0, width)
    b0, b1 = bscans if bscans is not None else (0, depth)
    if r1 <= r0:
        raise DataError(f"eye {eye.eye_id}: empty row range {r0}..{r1}")
    if not 0 <= c0 < c1 <= width:
        raise DataError(f"eye {eye.eye_id}: column range {c0}..{c1} must lie in 0..{width}")
    if not 0 <= b0 < b1 <= depth:
        raise DataError(f"eye {eye.eye_id}: B-scan range {b0}..{b1} must lie in 0..{depth}")
    oct_volume = _window(eye.oct, r0, r1, 0, "zero")[:, c0:c1, b0:b1]
    labels = None if eye.labels is None else _window(eye.labels, r0, r1, 0, "edge")[:, c0:c1, b0:b1]
    positions = eye.bscan_positions[b0:b1]
    slo = slo_positions = None
    if eye.slo is not None and eye.slo_positions is not None:
        tol = 1e-9
        keep = (eye.slo_positions >= positions[0] - tol) & (eye.slo_positions <= positions[-1] + tol)
        slo, slo_positions = eye.slo[c0:c1, keep], eye.slo_positions[keep]
    origin = np.add(eye.meta.get("crop_origin", [0, 0, 0]), [r0, c0, b0]).tolist()
    spacing_d = float(np.median(np.diff(positions))) if positions.size > 1 else eye.spacing[2]
    return replace(
        eye,
        oct=oct_volume,
        labels=labels,
        slo=slo,
        bscan_positions=positions,
        slo_positions=slo_positions,
        spacing=(eye.spacing[0], eye.spacing[1], spacing_d),
        meta={**eye.meta, "crop_origin": origin},
    )


def crop_around_bm(eye: Eye, above: int, below: int, bm_rows: np.ndarray | None = None) -> Eye:
    """A depth window of ``above + below`` rows: ``above`` rows over BM and ``below`` rows from it.

    BM is taken as the median of ``bm_rows [W, D]`` (from the labels when not given), which
    is a single row after :func:`flatten_at_bm`.
    """
    if above < 0 or below < 0 or above + below == 0:
        raise DataError(f"depth window needs above >= 0, below >= 0 and a positive height, got {above}, {below}")
    if bm_rows is None:
        if eye.labels is None:
            raise DataError(f"eye {eye.eye_id}: no labels to locate Bruch's membrane; give the BM rows [W, D]")
        bm_rows = bm_rows_from_labels(eye.labels)
    bm = int(np.rint(np.median(bm_rows)))
    return crop(eye, rows=(bm - above, bm + below))


def subsample(eye: Eye, factor: int, offset: int = 0) -> Eye:
    """Every ``factor``-th B-scan from ``offset``, at its original position; the SLO stays dense."""
    return eye.subsample(factor, offset)


def write_subsampled(
    data_dir: str | Path, factors: list[int], *, overwrite: bool = False, progress: bool = True
) -> list[Path]:
    """Write ``oct_flat_subsmpl<k>_`` (and ``oct_seg_flat_subsmpl<k>_``) files for every eye.

    Existing files are refused unless ``overwrite``; all targets are checked before
    anything is written. Returns the paths written.
    """
    bad = [k for k in factors if k < 2]
    if bad:
        raise DataError(f"subsampling factors must be >= 2 (1 is the dense volume), got {bad}")
    eyes = list_eyes(data_dir)
    if not eyes:
        raise DataError(f"{data_dir}: no eyes found to subsample")
    if not overwrite:
        for subject, laterality in eyes:
            for k in factors:
                files = eye_files(data_dir, subject, laterality, k)
                for path in (files.oct, files.labels):
                    refuse_existing(path, overwrite)
    written: list[Path] = []
    with staged_folder(data_dir) as staging:  # all files or none: an interrupted run leaves no partial set
        for subject, laterality in tqdm(eyes, desc="subsample", unit="eye", disable=not progress):
            eye = read_eye(data_dir, subject, laterality)
            keep_slo = eye_files(data_dir, subject, laterality).slo.exists()
            for k in factors:
                sparse = subsample(eye, k)
                if keep_slo:  # the tree's SLO stays as it is
                    sparse = replace(sparse, slo=None, slo_positions=None)
                written += [
                    Path(data_dir) / p.relative_to(staging)
                    for p in write_eye(staging, sparse, subsample=k, overwrite=True)
                ]
    return written
