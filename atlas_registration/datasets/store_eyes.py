"""The atlas's eyes read lazily from an eye store (``SETTINGS.DATA_DIR`` a ``.zarr`` store).

A :class:`StoredEye` holds one eye's metadata and, once checked, its intensity range (two
numbers); its voxels stay in the store. Every read returns only the chosen B-scans, prepared
as the tree's eyes are (:func:`~atlas_registration.datasets.eyes.prepare_eye`: min-max
normalised by the range of the whole eye as trained, labels mapped to the atlas classes, a left
eye mirrored with ``DATA.FLIP_OS``), so a training patch, a whole validation eye or one slab of
the median atlas reads just its B-scans, and nothing of an eye stays in the process between
reads: memory does not grow with the number of training eyes.

``DATA.SUBSMPL_FACTOR`` k trains on every k-th stored B-scan from the first, which is what the
tree's ``oct_flat_subsmpl<k>`` files hold (``python -m retina_data subsample``); test eyes take
every stored B-scan, as the tree's dense files. Folds are by subject, as for a tree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from atlas_registration.datasets.eyes import FoldEyes, intensity_range, prepare_eye, require_one_grid, subject_eye_keys
from atlas_registration.datasets.label_mapping import LabelMapping
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.eye_store import EyeInfo, EyeStore
from retina_data.folds import fold_split, read_folds
from retina_data.validation import eye_problems, require_valid_eyes

CHECK_BYTES = 64 * 2**20
"""About how many bytes of B-scans one read of the check (:meth:`StoredEye.check`) holds."""


@lru_cache(maxsize=4)
def open_store(location: str) -> EyeStore:
    """The store at ``location``, opened once per process (opening reads only its attributes)."""
    return EyeStore.open(location)


class StoredEye:
    """One eye of an eye store as the atlas trains on it: every ``subsample``-th stored B-scan.

    Attributes (as an :class:`~retina_data.eye.Eye`'s, without reading the arrays): ``eye_id``,
    ``subject``, ``laterality``, ``shape`` ``(H, W, D)`` of the B-scans used, ``spacing`` mm
    (``dD`` the median step between them, as :meth:`Eye.select_bscans` gives), ``bscan_positions [D]``.
    """

    def __init__(self, location: str, info: EyeInfo, mapping: LabelMapping, flip_os: bool, subsample: int = 1) -> None:
        if not info.has_labels:
            raise DataError(
                f"{location}: eye {info.eye_id}: the atlas needs labelled eyes (the store holds no labels for it)"
            )
        self.location, self.info, self.mapping, self.flip_os = location, info, mapping, flip_os
        self.bscans = np.arange(0, info.shape[2], subsample)
        """Store B-scan indices ``[D]`` this eye is made of."""
        self.eye_id, self.subject, self.laterality = info.eye_id, info.subject, info.laterality
        self.shape = (info.shape[0], info.shape[1], len(self.bscans))
        self.bscan_positions = np.asarray(info.bscan_positions, dtype=np.float64)[self.bscans]
        step = (
            info.spacing[2]
            if subsample == 1 or len(self.bscans) < 2
            else float(np.median(np.diff(self.bscan_positions)))
        )
        self.spacing = (float(info.spacing[0]), float(info.spacing[1]), float(step))
        self.value_range: tuple[float, float] | None = None
        """``(min, max)`` intensity over the B-scans used (:meth:`check`), ``None`` until then."""

    def __repr__(self) -> str:
        return f"StoredEye({self.eye_id}, {self.shape}, in {self.location})"

    def check(self) -> tuple[float, float]:
        """Read the eye once, a few B-scans at a time, and keep its intensity range (needed to
        normalise any part of it as the whole); its values are checked on the way.

        Raises:
            DataError: NaN/Inf intensities or labels outside the label mapping, naming the eye and
                the ``validate`` command that lists every problem of the store.
        """
        if self.value_range is not None:
            return self.value_range
        height, width, depth = self.shape
        block = max(int(CHECK_BYTES // (height * width * 5)), 1)
        low, high = np.inf, -np.inf
        store = open_store(self.location)
        for start in range(0, depth, block):
            part = self.bscans[start : start + block]
            part_low, part_high = self._checked_range(store.read_eye(self.eye_id, part.tolist()), store.num_labels)
            low, high = min(low, part_low), max(high, part_high)
        self.value_range = (low, high)
        return self.value_range

    def _checked_range(self, stored: Eye, num_labels: int) -> tuple[float, float]:
        """The intensity range of the stored B-scans of ``stored`` (a part of the eye as stored),
        refusing them if they fail the checks of ``validate``
        (:func:`~retina_data.validation.eye_problems`; the range is not checked, as every eye is
        min-max normalised here) or hold labels outside the label mapping."""
        require_valid_eyes(
            eye_problems(stored, "store", self.location, num_labels=num_labels, intensity_range=False), self.location
        )
        try:
            self.mapping.apply(np.zeros(0) if stored.labels is None else stored.labels)
        except DataError as exc:
            raise DataError(f"{self.location}: eye {self.eye_id}: {exc}") from exc
        return intensity_range(stored.oct)

    def read(self, bscans: Sequence[int] | np.ndarray | None = None) -> Eye:
        """The prepared eye, or only its B-scans ``bscans`` (indices into :attr:`bscans`), as an
        :class:`Eye` at their positions: ``oct [H, W, k]`` in [0, 1] by the whole eye's range,
        atlas labels, atlas orientation. The first whole read also checks the eye (:meth:`check`)."""
        chosen = self.bscans if bscans is None else self.bscans[np.asarray(bscans, dtype=np.intp)]
        store = open_store(self.location)
        stored = store.read_eye(self.eye_id, chosen.tolist())
        if bscans is None and self.value_range is None:
            self.value_range = self._checked_range(stored, store.num_labels)
        return prepare_eye(stored, self.mapping, self.flip_os, self.check())

    def slab(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(oct [H, W, stop-start], labels [H, W, stop-start])`` prepared: a slab of the median atlas."""
        eye = self.read(np.arange(start, stop))
        return eye.oct, eye.required_labels("the median atlas")


AtlasEye = Eye | StoredEye
"""A training eye of the atlas: in memory (or memory-mapped) from a tree, or in a store."""


def store_eyes(
    location: str, subjects: list[str], mapping: LabelMapping, flip_os: bool, subsample: int = 1
) -> list[StoredEye]:
    """Handles of every eye of ``subjects`` in the store (in order, OS before OD); nothing is read."""
    store = open_store(location)
    available = set()
    for eye_id in store.eye_ids:  # the store checks that each is "<subject>_<OD|OS>"
        subject, laterality = eye_id.rsplit("_", 1)
        available.add((subject, laterality))
    keys = subject_eye_keys(available, subjects, location, "eyes <subject>_<OD|OS> in the store")
    return [StoredEye(location, store.info(f"{subject}_{lat}"), mapping, flip_os, subsample) for subject, lat in keys]


def read_store_fold_eyes(
    location: str | os.PathLike,
    fold_file: str | Path,
    fold: int,
    mapping: LabelMapping,
    flip_os: bool,
    subsample: int = 1,
    progress: bool = False,
) -> FoldEyes:
    """The TRAIN eyes of ``fold`` as :class:`StoredEye` handles (every ``subsample``-th B-scan), each
    read once to check it and to find its intensity range, and its TEST eyes read whole and prepared.

    Raises:
        DataError: not a store, an empty TRAIN list, a subject without eyes in the store, an eye
            without labels or with bad values, training eyes of different shapes.
    """
    location = str(location)
    open_store(location)
    split = fold_split(read_folds(fold_file), fold, fold_file)
    if not split["TRAIN"]:
        raise DataError(f"{fold_file}: FOLD.{fold}.TRAIN is empty; the atlas needs training eyes")
    train = store_eyes(location, split["TRAIN"], mapping, flip_os, subsample)
    test = store_eyes(location, split["TEST"], mapping, flip_os, 1)
    require_one_grid(train, location)
    for eye in tqdm(train, desc="checking training eyes", unit="eye", disable=not progress):
        eye.check()
    return FoldEyes(train=train, test=[eye.read() for eye in test])


def store_files(location: str, eyes: Sequence[StoredEye | Eye]) -> list[Path]:
    """The metadata files of a local store that name its eyes (root, and each eye's group and
    arrays); a rewritten store changes their size or time. An fsspec URL has none."""
    if "://" in location:
        return []
    root = Path(location)
    files = [root / "zarr.json"]
    for eye in eyes:
        files += [
            root / eye.eye_id / "zarr.json",
            root / eye.eye_id / "oct" / "zarr.json",
            root / eye.eye_id / "labels" / "zarr.json",
        ]
    return files
