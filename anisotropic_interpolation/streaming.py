"""Training eyes streamed from an eye store: each step reads only the B-scans it uses.

:class:`StreamedVolumes` stands in for :class:`~anisotropic_interpolation.sampling.SparseVolumes`
(``TRAINING.DATA_ON_DEVICE: false``): it draws the same random numbers from the same generator,
reads the distinct (eye, input B-scan) pairs of the step from a
:class:`~retina_data.eye_store.EyeStore` (one chunk per B-scan; the eyes of a step in parallel
threads), moves them to the device and gathers the points from them, so it gives the very
batches ``SparseVolumes`` gives for the same eyes and generator state, and the same training.

A fold streamed from a store (:func:`~anisotropic_interpolation.pipeline.load_fold`) holds its
training eyes as :class:`StreamedEye`: the store's metadata of the eye (kept by the store, see
:mod:`retina_data.eye_store`) and, once the eye was read and checked, its OCT range.

Memory does not grow with the number of eyes beyond a few numbers per eye: held per eye are its
id, the store indices of its ``S`` input B-scans and their slow-axis coordinates ``[S]`` (and,
with min-max normalisation, its OCT minimum and range), fewer than the floats of one latent
code; per step, the ``P`` B-scans of its ``P`` images. Time per step does not grow either: a
step reads at most ``P`` B-scans, whatever the population. The price is the bytes read: a patch
step reads a whole B-scan chunk for every patch (``H W / p²`` times the points it uses), a
whole-B-scan step (``SAMPLING: bscan``) reads each input B-scan once per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from anisotropic_interpolation.sampling import PointBatch, SparseVolumes, TrainingVolumes, slice_coordinates
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.eye_store import EyeInfo, EyeStore
from retina_data.preprocessing import minmax_normalise_eye

STREAM_IMAGES_AT_ONCE = 64
"""Whole B-scans read at once for the held-out loss (at 496 x 512: 81 MB of OCT and labels)."""


@dataclass(frozen=True)
class StreamedEye:
    """A training eye left in the eye store: what a fold needs of it, without its voxels.

    Attributes:
        info: the stored (dense) eye's metadata (:meth:`EyeStore.info`).
        factor: its input B-scans are every ``factor``-th stored B-scan, from the first.
        oct_range: ``(min, max - min)`` of the OCT of its input B-scans, found when the eye was
            read and checked (:meth:`checked`), for min-max normalisation on reading; ``None``
            when it was not read (an eye of another process of the run, or no check asked for).
    """

    info: EyeInfo
    factor: int
    oct_range: tuple[float, float] | None = None

    @property
    def eye_id(self) -> str:
        return self.info.eye_id

    @property
    def has_labels(self) -> bool:
        return self.info.has_labels

    @property
    def has_slo(self) -> bool:
        return self.info.has_slo

    @property
    def bscans(self) -> np.ndarray:
        """Store indices ``[S]`` of the input B-scans (as :meth:`retina_data.eye.Eye.subsample` keeps them)."""
        return np.arange(0, self.info.shape[2], self.factor)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, S)`` of the input B-scans, as the subsampled eye's."""
        height, width, _ = self.info.shape
        return height, width, len(self.bscans)

    def read(self, store: EyeStore) -> Eye:
        """The eye's input B-scans (with its whole SLO) as an :class:`Eye`, read from ``store``."""
        return store.read_eye(self.eye_id, self.bscans.tolist())

    def checked(self, eye: Eye) -> StreamedEye:
        """This eye with the OCT range of ``eye`` (its input B-scans as :meth:`read` gives them)."""
        low, high = float(eye.oct.min()), float(eye.oct.max())
        return replace(self, oct_range=(low, high - low))


TrainingEye = Eye | StreamedEye
"""A training eye of a fold: read into memory, or left in the store."""


class StreamedVolumes(TrainingVolumes):
    """The input B-scans of ``E`` eyes of one shape in an eye store, read per step.

    Args:
        store: the opened store.
        eye_ids: ``E`` eye ids of the store (the eyes ``0 .. E - 1``).
        bscan_index: ``[E, S]`` store B-scan index of every input B-scan.
        slice_coords: ``[E, S]`` normalised slow-axis coordinate of every input B-scan, on the device.
        height, width: ``H, W`` of every B-scan.
        use_labels, use_slo: read the labels / the SLO columns at the input B-scans.
        oct_range: ``[E, 2]`` float32 OCT minimum and range (max - min) of each eye's input
            B-scans, mapped to ``[0, 1]`` on reading (the reference gen-INR's min-max
            normalisation; the SLO is then normalised over its whole image), or ``None``.
        threads: eyes read at once.

    Attributes:
        bscans_read, bytes_read: B-scans and bytes (OCT, labels, whole SLO images) read so far.
    """

    images_at_once = STREAM_IMAGES_AT_ONCE

    def __init__(
        self,
        store: EyeStore,
        eye_ids: Sequence[str],
        bscan_index: np.ndarray,
        slice_coords: Tensor,
        height: int,
        width: int,
        *,
        use_labels: bool,
        use_slo: bool,
        oct_range: np.ndarray | None,
        threads: int = 4,
    ) -> None:
        self.store = store
        self.eye_ids = list(eye_ids)
        self.bscan_index = np.asarray(bscan_index, dtype=np.int32)
        self.slice_coords = slice_coords
        self.num_eyes, self.num_slices = self.bscan_index.shape
        self.height, self.width = height, width
        self.device = slice_coords.device
        self.use_labels, self.use_slo, self.oct_range = use_labels, use_slo, oct_range
        self.threads = threads
        self.bscans_read = 0
        self.bytes_read = 0
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_store(
        cls,
        store: EyeStore,
        eye_ids: Sequence[str],
        *,
        factor: int = 1,
        use_labels: bool,
        use_slo: bool,
        slice_scale: float,
        device: torch.device | str,
        normalise: bool = False,
        oct_ranges: Sequence[tuple[float, float] | None] | None = None,
        threads: int = 4,
    ) -> StreamedVolumes:
        """The every-``factor``-th B-scans (from the first, as :meth:`retina_data.eye.Eye.subsample`)
        of the store's eyes ``eye_ids`` as input B-scans; every eye must then have the same shape.
        Reads only metadata, and with ``normalise`` the input B-scans of each eye whose
        ``oct_ranges`` entry (``(min, max - min)``, found when it was checked:
        :attr:`StreamedEye.oct_range`) is not given, once (one eye at a time), for its OCT
        minimum and maximum."""
        if not eye_ids:
            raise DataError("no eyes to train or fit on")
        indices, coords, ranges = [], [], []
        shapes: dict[tuple[int, int, int], str] = {}
        for number, eye_id in enumerate(eye_ids):
            info = store.info(eye_id)
            for wanted, present, what in ((use_labels, info.has_labels, "labels"), (use_slo, info.has_slo, "an SLO")):
                if wanted and not present:
                    raise DataError(f"eye store, eye {eye_id}: has no {what}; expected {what} for every training eye")
            height, width, depth = info.shape
            index = np.arange(0, depth, factor)
            positions = np.asarray(info.bscan_positions, dtype=np.float64)[index]
            shapes.setdefault((height, width, index.size), eye_id)
            indices.append(index)
            coords.append(slice_coordinates(positions, positions, slice_scale))
            known = None if oct_ranges is None else oct_ranges[number]
            if normalise and known is not None:
                ranges.append(known)
            elif normalise:
                intensity, _ = store.read_bscans(eye_id, index.tolist())
                low, high = float(intensity.min()), float(intensity.max())
                ranges.append((low, high - low))
        if len(shapes) != 1:
            raise DataError(
                f"eyes fitted together need one shape [H, W, input B-scans], got {sorted(shapes)} "
                f"(e.g. eyes {', '.join(shapes.values())})"
            )
        ((height, width, _),) = shapes
        return cls(
            store,
            eye_ids,
            np.stack(indices),
            torch.as_tensor(np.stack(coords), device=device),
            height,
            width,
            use_labels=use_labels,
            use_slo=use_slo,
            oct_range=np.asarray(ranges, dtype=np.float32) if normalise else None,
            threads=threads,
        )

    def subset(self, eyes: Sequence[int]) -> StreamedVolumes:
        chosen = list(eyes)
        index = torch.as_tensor(chosen, dtype=torch.long, device=self.device)
        return StreamedVolumes(
            self.store,
            [self.eye_ids[eye] for eye in chosen],
            self.bscan_index[chosen],
            self.slice_coords[index],
            self.height,
            self.width,
            use_labels=self.use_labels,
            use_slo=self.use_slo,
            threads=self.threads,
            oct_range=None if self.oct_range is None else self.oct_range[chosen],
        )

    def select_bscans(self, index: Tensor) -> StreamedVolumes:
        return StreamedVolumes(
            self.store,
            self.eye_ids,
            self.bscan_index[:, index.cpu().numpy()],
            self.slice_coords[:, index],
            self.height,
            self.width,
            use_labels=self.use_labels,
            use_slo=self.use_slo,
            oct_range=self.oct_range,
            threads=self.threads,
        )

    def gather(self, eye: Tensor, bscan: Tensor, rows: Tensor, cols: Tensor) -> PointBatch:
        """The points of ``P`` images (as :meth:`SparseVolumes.gather`): their distinct B-scans are
        read, then gathered from as from a ``SparseVolumes`` of one B-scan per eye."""
        pairs, inverse = torch.unique((eye * self.num_slices + bscan).view(-1), sorted=True, return_inverse=True)
        read = self.read(pairs.cpu().numpy())
        local = inverse.view(-1, 1, 1)
        batch = read.gather(local, torch.zeros_like(local), rows, cols)
        return replace(batch, eye=eye.expand(batch.intensity.shape).reshape(-1))

    def read(self, pairs: np.ndarray) -> SparseVolumes:
        """The B-scans ``pairs [U]`` (``eye * S + input B-scan``, sorted) as ``U`` eyes of one B-scan each."""
        eyes, bscans = np.divmod(pairs, self.num_slices)
        count = pairs.size
        intensity = np.empty((count, self.height, self.width), np.float32)
        labels = np.empty((count, self.height, self.width), np.uint8) if self.use_labels else None
        slo = np.empty((count, self.width), np.float32) if self.use_slo else None
        starts = np.flatnonzero(np.r_[True, eyes[1:] != eyes[:-1]])
        groups = [slice(start, stop) for start, stop in zip(starts, [*starts[1:], count])]

        def read_eye(rows: slice) -> int:
            """Fill ``rows`` of the arrays (one eye's B-scans); the bytes read."""
            eye = int(eyes[rows.start])
            eye_id, index = self.eye_ids[eye], self.bscan_index[eye, bscans[rows]].tolist()
            size = 0
            if slo is not None:
                record = self.store.read_eye(eye_id, index)
                volume, classes = record.oct, record.labels
                whole = minmax_normalise_eye(record) if self.oct_range is not None else record
                slo[rows] = whole.slo_at(record.bscan_positions).T
                size += 0 if record.slo is None else record.slo.nbytes
            else:
                volume, classes = self.store.read_bscans(eye_id, index)
            size += volume.nbytes
            if self.oct_range is not None:
                low, extent = self.oct_range[eye]
                volume = (volume - low) / extent if extent > 0 else np.zeros_like(volume)
            intensity[rows] = np.moveaxis(volume, 2, 0)
            if labels is not None:
                if classes is None:
                    raise DataError(
                        f"{self.store.location}: eye {eye_id} has no labels; expected labels for every training eye"
                    )
                labels[rows] = np.moveaxis(classes, 2, 0)
                size += classes.nbytes
            return size

        if self.threads > 1 and len(groups) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="eye-store")
            sizes = list(self._pool.map(read_eye, groups))
        else:
            sizes = [read_eye(rows) for rows in groups]
        self.bscans_read += count
        self.bytes_read += sum(sizes)
        device = self.device
        pair_index = torch.as_tensor(pairs, device=device)
        return SparseVolumes(
            torch.as_tensor(intensity, device=device)[..., None],
            None if labels is None else torch.as_tensor(labels, device=device)[..., None],
            None if slo is None else torch.as_tensor(slo, device=device)[..., None],
            self.slice_coords[pair_index // self.num_slices, pair_index % self.num_slices].view(-1, 1),
        )
