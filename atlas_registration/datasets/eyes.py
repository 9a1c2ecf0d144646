"""The eyes of one cross-validation fold, in atlas orientation and with atlas labels."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from atlas_registration.utilities.label_mapping import LabelMapping
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.folds import fold_split, read_folds
from retina_data.tree import list_eyes, read_eye


@dataclass
class FoldEyes:
    """The training and test eyes of one fold (labels already mapped to atlas classes)."""

    train: list[Eye]
    test: list[Eye]


def to_atlas_orientation(eye: Eye, flip_os: bool) -> Eye:
    """A left eye mirrored along W into right-eye orientation (its own inverse); others as they are."""
    if not (flip_os and eye.laterality == "OS"):
        return eye
    return replace(eye, oct=eye.oct[:, ::-1].copy(),
                   labels=None if eye.labels is None else eye.labels[:, ::-1].copy(),
                   slo=None if eye.slo is None else eye.slo[::-1].copy(), meta=dict(eye.meta))


def from_atlas_orientation(volume: np.ndarray, laterality: str, flip_os: bool, axis: int = 1) -> np.ndarray:
    """A volume computed in atlas orientation, mirrored back for a left eye (``axis`` is W)."""
    return np.flip(volume, axis=axis).copy() if flip_os and laterality == "OS" else volume


def prepare_eye(eye: Eye, mapping: LabelMapping, flip_os: bool) -> Eye:
    """Atlas orientation, atlas labels (``mapping``), float32 intensities."""
    if eye.labels is None:
        raise DataError(f"eye {eye.eye_id}: the atlas needs labelled eyes (oct_seg_flat_... missing)")
    eye = replace(eye, oct=eye.oct.astype(np.float32, copy=False), labels=mapping.apply(eye.labels),
                  meta=dict(eye.meta))
    return to_atlas_orientation(eye, flip_os)


def read_subject_eyes(data_dir: str | Path, subjects: list[str], mapping: LabelMapping,
                      flip_os: bool, subsample: int = 1) -> list[Eye]:
    """Every eye of ``subjects`` (in order), prepared; a subject without eyes raises DataError."""
    available = list_eyes(data_dir, subsample)
    eyes = []
    for subject in subjects:
        lateralities = [lat for sub, lat in available if sub == subject]
        if not lateralities:
            raise DataError(f"{data_dir}: subject {subject} of the fold file has no eye on disk "
                            f"(expected {subject}/<OD|OS>/oct_flat_<od|os>.nii.gz)")
        eyes += [prepare_eye(read_eye(data_dir, subject, lat, subsample), mapping, flip_os)
                 for lat in lateralities]
    return eyes


def read_fold_eyes(data_dir: str | Path, fold_file: str | Path, fold: int, mapping: LabelMapping,
                   flip_os: bool) -> FoldEyes:
    """Read the TRAIN and TEST eyes of ``fold`` named in ``fold_file`` from the NIfTI tree."""
    if not Path(data_dir).is_dir():
        raise DataError(f"{data_dir}: data directory not found (SETTINGS.DATA_DIR)")
    split = fold_split(read_folds(fold_file, data_dir), fold, fold_file)
    if not split["TRAIN"]:
        raise DataError(f"{fold_file}: FOLD.{fold}.TRAIN is empty; the atlas needs training eyes")
    train = read_subject_eyes(data_dir, split["TRAIN"], mapping, flip_os)
    test = read_subject_eyes(data_dir, split["TEST"], mapping, flip_os)
    shapes = {eye.shape for eye in train}
    if len(shapes) > 1:
        raise DataError(f"{data_dir}: training eyes differ in shape {sorted(shapes)}; "
                        "the median atlas needs one grid (crop or resample them first)")
    return FoldEyes(train=train, test=test)
