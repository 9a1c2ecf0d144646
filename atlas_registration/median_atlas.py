"""The median atlas: voxel-wise lower median of the training eyes' intensities and label indices.

As in the reference, both the intensity and the label are the *lower* median of the N eyes
at each voxel (the ``(N - 1) // 2``-th smallest value, ``torch.median``'s choice for even N).
The median of the label indices keeps the layer order: along an A-scan every eye's labels
rise monotonically, and so does their voxel-wise median, which a majority vote need not.

This is the "atlas only" reference of the atlas experiments and a simple initial atlas. It
is computed slab by slab along the B-scan axis (the last axis, ``D``), so only one slab of
every eye is held at a time: a NIfTI stores the last axis outermost, so a slab of B-scans is
one contiguous run of bytes that nibabel reads lazily from ``dataobj`` (compressed files are
kept open and read forwards, so each file is decompressed about once in all).

Left and right eyes are mirror images of each other along the fast (B-scan, ``W``) axis.
With ``mirror_os`` every OS (left) eye is flipped along ``W`` to OD orientation before it
enters the median; by default (as the reference) eyes are taken as stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nibabel as nib
import numpy as np
from tqdm import tqdm

from atlas_registration.datasets.label_mapping import LabelMapping
from retina_data.errors import DataError
from retina_data.eye import LATERALITIES, Eye
from retina_data.files import refuse_existing
from retina_data.label_tables import write_label_tables
from retina_data.nifti import read_nifti, write_nifti
from retina_data.tree import eye_files

ATLAS_INTENSITY_FILE = "atlas_intensity.nii.gz"
ATLAS_LABELS_FILE = "atlas_labels.nii.gz"


@dataclass
class AtlasVolumes:
    """An atlas on the common grid of the eyes it was built from.

    Attributes:
        intensity: lower median OCT intensity ``[H, W, D]``, float32.
        labels: lower median label index ``[H, W, D]``, uint8.
        spacing: voxel size ``(dH, dW, dD)`` in mm of the eyes (``None`` when unknown).
        eye_ids: the eyes that went into the atlas, in input order.
    """

    intensity: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float] | None = None
    eye_ids: tuple[str, ...] = ()


class _Source(Protocol):
    """One eye as the atlas reads it: shape, spacing, and slabs of B-scans on demand."""

    eye_id: str
    laterality: str
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    def slab(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """``(oct [H, W, stop-start], labels [H, W, stop-start])``."""


@dataclass
class _EyeSource:
    eye: Eye

    def __post_init__(self) -> None:
        if self.eye.labels is None:
            raise DataError(f"eye {self.eye.eye_id}: has no labels; the atlas needs labelled eyes")
        self._labels = self.eye.labels
        self.eye_id, self.laterality = self.eye.eye_id, self.eye.laterality
        self.shape, self.spacing = self.eye.shape, self.eye.spacing

    def slab(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.eye.oct[:, :, start:stop], self._labels[:, :, start:stop]


@dataclass
class _FolderSource:
    """An eye folder ``<data>/<subject>/<OD|OS>`` read lazily through nibabel."""

    folder: Path

    def __post_init__(self) -> None:
        self.laterality = self.folder.name
        if self.laterality not in LATERALITIES:
            raise DataError(f"{self.folder}: an eye folder must be named OD or OS (<data>/<subject>/<OD|OS>)")
        subject = self.folder.parent.name
        self.eye_id = f"{subject}_{self.laterality}"
        files = eye_files(self.folder.parent.parent, subject, self.laterality)
        self._oct = _load(files.oct)
        self._labels = _load(files.labels)
        shape = tuple(int(n) for n in self._oct.shape)
        if len(shape) != 3 or tuple(self._labels.shape) != shape:
            raise DataError(
                f"{self.folder}: OCT {self._oct.shape} and labels {self._labels.shape} must both be [H, W, D]"
            )
        self.shape = (shape[0], shape[1], shape[2])
        zooms = [float(z) for z in self._oct.header.get_zooms()[:3]]
        self.spacing = (zooms[0], zooms[1], zooms[2])

    def slab(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(self._oct.dataobj[:, :, start:stop]), np.asarray(self._labels.dataobj[:, :, start:stop]))


def _load(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        raise DataError(f"{path}: file not found (the atlas needs the OCT and its labels)")
    try:
        image = nib.load(str(path), keep_file_open=True)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(f"{path}: cannot read NIfTI: {exc}") from exc
    if not isinstance(image, nib.Nifti1Image):
        raise DataError(f"{path}: a {type(image).__name__} file; expected a NIfTI image (.nii or .nii.gz)")
    return image


def _sources(eyes: Iterable[Eye | str | Path | _Source]) -> list[_Source]:
    sources: list[_Source] = []
    for item in eyes:
        if isinstance(item, Eye):
            sources.append(_EyeSource(item))
        elif isinstance(item, (str, Path)):
            sources.append(_FolderSource(Path(item)))
        else:  # already a source: an eye read from a store slab by slab (datasets.store_eyes.StoredEye)
            sources.append(item)
    if not sources:
        raise DataError("median atlas: no eyes given")
    first = sources[0]
    for source in sources[1:]:
        if source.shape != first.shape:
            raise DataError(
                f"median atlas: eye {source.eye_id} has shape {source.shape} but eye {first.eye_id} "
                f"has {first.shape}; all eyes must share one grid (resample or crop them first)"
            )
        if not np.allclose(source.spacing, first.spacing, rtol=1e-4):
            raise DataError(
                f"median atlas: eye {source.eye_id} has spacing {source.spacing} mm but eye "
                f"{first.eye_id} has {first.spacing} mm; all eyes must share one voxel size"
            )
    return sources


def _slabs(depth: int, slab_size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, depth, slab_size):
        yield start, min(start + slab_size, depth)


def to_od_orientation(volume: np.ndarray, laterality: str) -> np.ndarray:
    """``volume [H, W, ...]`` of an eye in right-eye (OD) orientation: OS is flipped along W.

    The flip is its own inverse, so the same call takes an OD-oriented result (a warped
    atlas, a prediction) back to an OS eye's orientation. Returns a view.
    """
    if laterality not in LATERALITIES:
        raise DataError(f"laterality must be one of {LATERALITIES}, got {laterality!r}")
    return volume[:, ::-1] if laterality == "OS" else volume


def lower_median(stack: np.ndarray) -> np.ndarray:
    """The lower median over the first axis of ``stack [N, *shape]`` (the ``(N - 1) // 2``-th smallest
    value per position, as ``torch.median``), same dtype, ``[*shape]``."""
    stack = np.asarray(stack)
    middle = (stack.shape[0] - 1) // 2
    return np.partition(stack, middle, axis=0)[middle]


def median_atlas(
    eyes: Iterable[Eye | str | Path | _Source],
    *,
    mirror_os: bool = False,
    label_mapping: LabelMapping | None = None,
    memory_mb: float = 512.0,
    progress: bool = False,
) -> AtlasVolumes:
    """Voxel-wise lower median of the intensities and of the label indices of eyes that share one grid.

    Args:
        eyes: :class:`Eye` records, eye folders ``<data>/<subject>/<OD|OS>`` of a data set
            tree, or eyes of a store (``StoredEye``; both read lazily, one slab at a time).
        mirror_os: flip OS eyes along ``W`` to OD orientation first (see module docstring).
        label_mapping: relabel every eye before the median (e.g. the 10 atlas classes).
        memory_mb: budget for one slab of all eyes (intensity float32 + labels); sets how
            many B-scans are processed at once (at least one).
        progress: show a tqdm bar over the slabs.

    Returns:
        :class:`AtlasVolumes` with ``intensity [H, W, D]`` float32 and ``labels [H, W, D]``
        uint8.

    Raises:
        DataError: no eyes, an eye without labels, or eyes of different shape or spacing.
    """
    sources = _sources(eyes)
    height, width, depth = sources[0].shape
    # per eye: float32 intensity and uint8 label, each twice (the stack and its partition)
    bytes_per_bscan = height * width * len(sources) * 2 * (4 + 1)
    slab_size = max(int(memory_mb * 2**20 // bytes_per_bscan), 1)
    intensity = np.empty((height, width, depth), dtype=np.float32)
    labels = np.empty((height, width, depth), dtype=np.uint8)
    bar = tqdm(list(_slabs(depth, slab_size)), desc="median atlas", unit="slab", disable=not progress)
    for start, stop in bar:
        oct_stack = np.empty((len(sources), height, width, stop - start), dtype=np.float32)
        label_stack = np.empty(oct_stack.shape, dtype=np.uint8)
        for index, source in enumerate(sources):
            oct_slab, label_slab = source.slab(start, stop)
            if mirror_os:
                oct_slab = to_od_orientation(oct_slab, source.laterality)
                label_slab = to_od_orientation(label_slab, source.laterality)
            oct_stack[index] = oct_slab
            label_stack[index] = label_slab if label_mapping is None else label_mapping.apply(label_slab)
        intensity[:, :, start:stop] = lower_median(oct_stack)
        labels[:, :, start:stop] = lower_median(label_stack)
    return AtlasVolumes(
        intensity=intensity,
        labels=labels,
        spacing=sources[0].spacing,
        eye_ids=tuple(source.eye_id for source in sources),
    )


def save_atlas_nifti(
    atlas: AtlasVolumes, out_dir: str | Path, spacing: Sequence[float] | None = None, *, overwrite: bool = False
) -> list[Path]:
    """Write ``atlas_intensity.nii.gz`` and ``atlas_labels.nii.gz`` into ``out_dir``.

    Args:
        atlas: the atlas volumes.
        out_dir: destination folder (created if missing).
        spacing: voxel size ``(dH, dW, dD)`` in mm; defaults to ``atlas.spacing``.
        overwrite: replace existing atlas files.

    Returns:
        The two paths written.

    Raises:
        OutputExistsError: a file exists and ``overwrite`` is false.
    """
    spacing = atlas.spacing if spacing is None else tuple(float(s) for s in spacing)
    if spacing is None or len(spacing) != 3:
        raise ValueError(f"atlas spacing must be (dH, dW, dD) in mm, got {spacing}")
    out_dir = Path(out_dir)
    for name in (ATLAS_INTENSITY_FILE, ATLAS_LABELS_FILE):
        refuse_existing(out_dir / name, overwrite)
    meta = {"atlas": "median", "eyes": list(atlas.eye_ids)}
    return [
        write_nifti(
            out_dir / ATLAS_INTENSITY_FILE,
            atlas.intensity.astype(np.float32, copy=False),
            spacing,
            meta=meta,
            overwrite=overwrite,
        ),
        write_nifti(
            out_dir / ATLAS_LABELS_FILE,
            atlas.labels.astype(np.uint8, copy=False),
            spacing,
            meta=meta,
            overwrite=overwrite,
        ),
    ]


def build_median_atlas(
    train_eyes: Sequence[Eye | _Source], out_dir: Path, reuse: bool, class_names: Sequence[str] | None = None
) -> AtlasVolumes:
    """The median atlas of the (prepared) training eyes, written as NIfTI into ``out_dir`` (with the
    ITK-SNAP / Slicer label tables of ``class_names`` beside its labels).

    The eyes are read from the ``DATA.SUBSMPL_FACTOR`` files and already hold atlas labels (and,
    with ``DATA.FLIP_OS``, atlas orientation), so no mapping or mirroring is applied again. With
    ``reuse`` an atlas already in ``out_dir`` is read instead.
    """
    intensity_path, labels_path = out_dir / ATLAS_INTENSITY_FILE, out_dir / ATLAS_LABELS_FILE
    if reuse and intensity_path.is_file() and labels_path.is_file():
        intensity = read_nifti(intensity_path)
        if len(intensity.spacing) != 3:
            raise DataError(f"{intensity_path}: a {len(intensity.spacing)}-D image; expected the atlas [H, W, D]")
        d_h, d_w, d_d = intensity.spacing
        return AtlasVolumes(
            intensity.array, read_nifti(labels_path).array, (d_h, d_w, d_d), tuple(eye.eye_id for eye in train_eyes)
        )
    atlas = median_atlas(train_eyes, mirror_os=False, progress=True)
    save_atlas_nifti(atlas, out_dir, overwrite=True)
    if class_names:
        write_label_tables(out_dir, list(class_names))
    return atlas
