"""The eyes of one cross-validation fold as the atlas reads them.

As in the reference, every eye is read from its ``oct_flat_subsmpl<k>_<od|os>`` files (k =
``DATA.SUBSMPL_FACTOR``; k = 1 reads ``oct_flat_<od|os>``), min-max normalised to [0, 1],
its labels mapped to the atlas classes, and (only with ``DATA.FLIP_OS``) a left eye mirrored
into right-eye orientation. A subject's eyes come in the reference's file order, OS before OD.

With a cache folder (``DATA.CACHE_DIR``) each prepared eye is written there once as ``.npy``
files and memory-mapped, so many eyes cost page cache, not process memory; without one the
eyes are held in memory. An eye store as ``SETTINGS.DATA_DIR`` is read lazily instead
(:mod:`atlas_registration.datasets.store_eyes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from atlas_registration.datasets.label_mapping import LabelMapping
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.files import atomic_save
from retina_data.folds import fold_split, read_folds
from retina_data.tree import eye_files, list_eyes, read_eye
from retina_data.validation import eye_problems, label_count, require_valid_eyes

if TYPE_CHECKING:
    from atlas_registration.datasets.store_eyes import StoredEye

FILE_ORDER = ("OS", "OD")
"""The order of a subject's eyes (the reference's file list)."""


@dataclass
class FoldEyes:
    """The eyes of one fold (labels already mapped to atlas classes).

    Attributes:
        train: the training eyes, from the ``DATA.SUBSMPL_FACTOR`` files; from an eye store, handles
            (:class:`~atlas_registration.datasets.store_eyes.StoredEye`) whose B-scans are read when used.
        test: the test eyes, from the dense files (``oct_flat_<od|os>``), in memory.
    """

    train: list[Eye] | list[StoredEye]
    test: list[Eye]


def to_atlas_orientation(eye: Eye, flip_os: bool) -> Eye:
    """A left eye mirrored along W into right-eye orientation (its own inverse); others as they are."""
    if not (flip_os and eye.laterality == "OS"):
        return eye
    return replace(
        eye,
        oct=eye.oct[:, ::-1].copy(),
        labels=None if eye.labels is None else eye.labels[:, ::-1].copy(),
        slo=None if eye.slo is None else eye.slo[::-1].copy(),
        meta=dict(eye.meta),
    )


def from_atlas_orientation(volume: np.ndarray, laterality: str, flip_os: bool, axis: int = 1) -> np.ndarray:
    """A volume computed in atlas orientation, mirrored back for a left eye (``axis`` is W)."""
    return np.flip(volume, axis=axis).copy() if flip_os and laterality == "OS" else volume


def intensity_range(volume: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of a volume (or of part of one), the range :func:`min_max_normalise` maps onto [0, 1]."""
    volume = np.asarray(volume, dtype=np.float32)
    return float(volume.min()), float(volume.max())


def min_max_normalise(volume: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """``(v - min) / (max - min)`` float32 (the reference's per-volume normalisation); a constant
    volume becomes all zeros. ``value_range``: the ``(min, max)`` of the whole volume when
    ``volume`` is only part of it (B-scans read from a store), so the part is normalised as in
    the whole; by default that of ``volume``."""
    volume = np.asarray(volume, dtype=np.float32)
    low, high = intensity_range(volume) if value_range is None else value_range
    return (volume - low) / (high - low) if high > low else np.zeros_like(volume)


def prepare_eye(eye: Eye, mapping: LabelMapping, flip_os: bool, value_range: tuple[float, float] | None = None) -> Eye:
    """Min-max normalised float32 intensities, atlas labels (``mapping``), atlas orientation.

    ``value_range``: the intensity range of the whole eye when ``eye`` holds only some of its
    B-scans (see :func:`min_max_normalise`).
    """
    if eye.labels is None:
        raise DataError(f"eye {eye.eye_id}: the atlas needs labelled eyes (oct_seg_flat_... missing)")
    eye = replace(
        eye, oct=min_max_normalise(eye.oct, value_range), labels=mapping.apply(eye.labels), meta=dict(eye.meta)
    )
    return to_atlas_orientation(eye, flip_os)


def _write_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle: np.save would append ".npy" to a temporary name
        np.save(handle, np.ascontiguousarray(array))


def memory_mapped(eye: Eye, cache_dir: Path, subsample: int) -> Eye:
    """``eye`` with its OCT and labels written to ``cache_dir`` and read back memory-mapped."""
    arrays: dict[str, np.ndarray] = {}
    for name, array in (("oct", eye.oct), ("labels", eye.required_labels("the atlas"))):
        path = cache_dir / f"{eye.eye_id}_subsmpl{subsample}_{name}.npy"
        atomic_save(path, partial(_write_npy, array=array), overwrite=True)
        arrays[name] = np.load(path, mmap_mode="r")
    return replace(eye, oct=arrays["oct"], labels=arrays["labels"], meta=dict(eye.meta))


def read_prepared_eye(
    data_dir: str | Path,
    subject: str,
    laterality: str,
    mapping: LabelMapping,
    flip_os: bool,
    subsample: int = 1,
    cache_dir: str | Path | None = None,
) -> Eye:
    """One eye from its ``subsample`` files, prepared (:func:`prepare_eye`), memory-mapped with a cache.

    The eye as stored passes the checks of ``validate`` first (:func:`~retina_data.validation.eye_problems`:
    dtypes, NaN/Inf, labels within ``dataset.yaml``'s names, finite positions); its intensity
    range is not checked, as every eye is min-max normalised here.

    Raises:
        DataError: the subsampled OCT or label file is missing (naming it and the command that
            writes it), or the eye fails a check (the first problem and how many more).
    """
    files = eye_files(data_dir, subject, laterality, subsample)
    for path in (files.oct, files.labels):
        if subsample > 1 and not path.is_file():
            raise DataError(
                f"{path}: not found; DATA.SUBSMPL_FACTOR = {subsample} reads the subsampled files, "
                f"write them with `python -m retina_data subsample {data_dir} {subsample}`"
            )
    stored = read_eye(data_dir, subject, laterality, subsample)
    require_valid_eyes(
        eye_problems(
            stored,
            "tree",
            Path(data_dir),
            num_labels=label_count(Path(data_dir)),
            intensity_range=False,
            subsample=subsample,
        ),
        Path(data_dir),
    )
    eye = prepare_eye(stored, mapping, flip_os)
    if cache_dir is None:
        return eye
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return memory_mapped(eye, Path(cache_dir), subsample)


def subject_eye_keys(
    available: set[tuple[str, str]], subjects: list[str], where: str | Path, expected: str
) -> list[tuple[str, str]]:
    """``(subject, laterality)`` of every eye of ``subjects`` in ``available`` (in order, OS before OD).

    Raises:
        DataError: a subject has no eye (naming ``where`` and the ``expected`` layout).
    """
    keys = []
    for subject in subjects:
        lateralities = [lat for lat in FILE_ORDER if (subject, lat) in available]
        if not lateralities:
            raise DataError(f"{where}: subject {subject} of the fold file has no eye on disk (expected {expected})")
        keys += [(subject, lat) for lat in lateralities]
    return keys


def read_subject_eyes(
    data_dir: str | Path,
    subjects: list[str],
    mapping: LabelMapping,
    flip_os: bool,
    subsample: int = 1,
    cache_dir: str | Path | None = None,
) -> list[Eye]:
    """Every eye of ``subjects`` (in order, OS before OD), prepared; a subject without eyes raises DataError."""
    keys = subject_eye_keys(set(list_eyes(data_dir)), subjects, data_dir, "<subject>/<OD|OS>/oct_flat_<od|os>.nii.gz")
    return [read_prepared_eye(data_dir, subject, lat, mapping, flip_os, subsample, cache_dir) for subject, lat in keys]


def require_one_grid(train: Sequence[Eye | StoredEye], where: str | Path) -> None:
    """Refuse training eyes of different shapes (the median atlas needs one grid)."""
    shapes = {eye.shape for eye in train}
    if len(shapes) > 1:
        raise DataError(
            f"{where}: training eyes differ in shape {sorted(shapes)}; "
            "the median atlas needs one grid (crop or resample them first)"
        )


def read_fold_eyes(
    data_dir: str | Path,
    fold_file: str | Path,
    fold: int,
    mapping: LabelMapping,
    flip_os: bool,
    subsample: int = 1,
    cache_dir: str | Path | None = None,
) -> FoldEyes:
    """Read the TRAIN eyes of ``fold`` (``subsample`` files) and its TEST eyes (dense files).

    Every subject the fold file names must be in ``data_dir`` (else :class:`DataError` naming them).
    """
    if not Path(data_dir).is_dir():
        raise DataError(f"{data_dir}: data directory not found (SETTINGS.DATA_DIR)")
    split = fold_split(read_folds(fold_file, data_dir), fold, fold_file)
    if not split["TRAIN"]:
        raise DataError(f"{fold_file}: FOLD.{fold}.TRAIN is empty; the atlas needs training eyes")
    train = read_subject_eyes(data_dir, split["TRAIN"], mapping, flip_os, subsample, cache_dir)
    test = read_subject_eyes(data_dir, split["TEST"], mapping, flip_os, 1, cache_dir)
    require_one_grid(train, data_dir)
    return FoldEyes(train=train, test=test)
