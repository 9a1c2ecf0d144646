"""Subject-level k-fold cross-validation splits, stored as ``cross-validation-folds.yml``.

The reference format lists subject ids (folder names of the tree), so both eyes of a
subject always fall into the same fold::

    FOLD:
      0: {TRAIN: [sub002, sub003, ...], TEST: [sub001, sub004, ...]}
      1: {...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retina_data.config import dump_yaml, read_yaml
from retina_data.errors import ConfigError, DataError
from retina_data.files import atomic_write_text
from retina_data.identifiers import check_id
from retina_data.tree import list_eyes

FOLDS_FILE = "cross-validation-folds.yml"
Folds = dict[int, dict[str, list[str]]]
"""``{fold: {"TRAIN": [subject, ...], "TEST": [subject, ...]}}``."""


def make_folds(subjects: list[str], k: int, seed: int = 0) -> Folds:
    """Split ``subjects`` into ``k`` test folds of near-equal size after a seeded shuffle.

    Each subject is in the TEST list of exactly one fold and in the TRAIN list of all the
    others; lists are sorted. The same subjects, ``k`` and ``seed`` give the same folds.
    """
    unique = sorted(set(subjects))
    if len(unique) != len(subjects):
        raise DataError("subject list holds duplicates; give each subject once")
    if k < 2:
        raise DataError(f"k-fold cross-validation needs k >= 2 folds, got {k}")
    if len(unique) < k:
        raise DataError(f"{len(unique)} subject(s) cannot be split into {k} folds; need at least {k}")
    order = np.random.default_rng(seed).permutation(len(unique))
    parts = np.array_split(order, k)
    folds: Folds = {}
    for fold, part in enumerate(parts):
        test = sorted(unique[i] for i in part)
        folds[fold] = {"TRAIN": sorted(s for s in unique if s not in set(test)), "TEST": test}
    return folds


def subjects_on_disk(data_dir: str | Path) -> list[str]:
    """Subject ids of the tree that have at least one eye; an empty tree raises :class:`DataError`."""
    subjects = sorted({subject for subject, _ in list_eyes(data_dir)})
    if not subjects:
        raise DataError(
            f"{data_dir}: empty data set, no eyes found (expected <subject>/<OD|OS>/oct_flat_<od|os>.nii.gz)"
        )
    return subjects


def write_folds(path: str | Path, folds: Folds, *, overwrite: bool = False) -> Path:
    """Write folds in the reference format ``FOLD: {k: {TRAIN: [...], TEST: [...]}}``."""
    data = {
        "FOLD": {
            int(fold): {"TRAIN": list(split["TRAIN"]), "TEST": list(split["TEST"])} for fold, split in folds.items()
        }
    }
    return atomic_write_text(path, dump_yaml(data), overwrite=overwrite)


def write_folds_for_tree(
    data_dir: str | Path, path: str | Path, k: int = 5, seed: int = 0, *, overwrite: bool = False
) -> Path:
    """Folds over the subjects of a tree; ``k`` shrinks to the number of subjects if fewer."""
    subjects = subjects_on_disk(data_dir)
    if len(subjects) < 2:
        raise DataError(f"{data_dir}: {len(subjects)} subject(s); cross-validation needs at least 2")
    return write_folds(path, make_folds(subjects, min(k, len(subjects)), seed), overwrite=overwrite)


def read_folds(path: str | Path, data_dir: str | Path | None = None) -> Folds:
    """Read and check a folds file; with ``data_dir``, every subject must be on disk.

    Raises :class:`DataError` naming the file and the fold, key or subject at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: folds file not found (write one with `python -m retina_data folds DATA`)")
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    if not isinstance(data, dict) or not isinstance(data.get("FOLD"), dict) or not data["FOLD"]:
        raise DataError(f"{path}: expected a mapping FOLD: {{0: {{TRAIN: [...], TEST: [...]}}, ...}}")
    folds: Folds = {}
    for fold, split in data["FOLD"].items():
        if not isinstance(fold, int) or isinstance(fold, bool):
            raise DataError(f"{path}: fold key {fold!r} must be an integer index")
        if not isinstance(split, dict) or set(split) != {"TRAIN", "TEST"}:
            keys = sorted(split) if isinstance(split, dict) else split
            raise DataError(f"{path}: FOLD.{fold} must hold exactly TRAIN and TEST lists, got {keys}")
        for key in ("TRAIN", "TEST"):
            if not isinstance(split[key], list):
                raise DataError(f"{path}: FOLD.{fold}.{key} must be a list of subject ids")
            for subject in split[key]:
                check_id(subject, f"{path}: FOLD.{fold}.{key} subject")
            repeated = sorted({s for s in split[key] if split[key].count(s) > 1})
            if repeated:
                raise DataError(f"{path}: FOLD.{fold}.{key} lists subject(s) {', '.join(repeated)} more than once")
        both = sorted(set(split["TRAIN"]) & set(split["TEST"]))
        if both:
            raise DataError(f"{path}: FOLD.{fold}: subject(s) {', '.join(both)} in both TRAIN and TEST")
        folds[fold] = {"TRAIN": list(split["TRAIN"]), "TEST": list(split["TEST"])}
    if data_dir is not None:
        on_disk = set(subjects_on_disk(data_dir))
        for fold, split in folds.items():
            for key in ("TRAIN", "TEST"):
                missing = [s for s in split[key] if s not in on_disk]
                if missing:
                    raise DataError(
                        f"{path}: FOLD.{fold}.{key} names subject(s) not found in {data_dir}: {', '.join(missing)}"
                    )
    return folds


def fold_split(folds: Folds, fold: int, path: str | Path = FOLDS_FILE) -> dict[str, list[str]]:
    """The TRAIN/TEST lists of one fold; a missing index raises :class:`DataError`."""
    if fold not in folds:
        raise DataError(f"{path}: no fold {fold}; the file holds folds {sorted(folds)}")
    return folds[fold]
