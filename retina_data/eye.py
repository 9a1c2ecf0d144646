"""The ``Eye`` record: one OCT volume with its labels, SLO and geometry.

Axis convention everywhere: volumes are ``[H, W, D]`` = (depth along the A-scan,
position along the B-scan, B-scan index); en-face images are ``[W, D]``. Spacing is in
millimetres in the same order. B-scan positions are stored explicitly (mm along the slow
axis), so sparse and non-uniform acquisitions are exact.

The SLO is kept at its own slow-axis positions (``slo_positions``): subsampling the OCT
keeps the SLO dense, which is what lets a model use it to fill the gaps between B-scans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from retina_data.errors import DataError
from retina_data.identifiers import check_id

LATERALITIES = ("OD", "OS")


def positions_problem(positions: np.ndarray, what: str = "B-scan positions") -> str | None:
    """Why slow-axis ``positions [n]`` (mm) are unusable (``None`` when they are fine): they
    must be finite and strictly increasing. The one rule of the ``Eye`` record and ``validate``."""
    if not np.all(np.isfinite(positions)):
        return f"{what} hold {int((~np.isfinite(positions)).sum())} NaN/Inf value(s); expected finite positions (mm)"
    if positions.size > 1 and np.any(np.diff(positions) <= 0):
        return f"{what} must be strictly increasing"
    return None


@dataclass(init=False)
class Eye:
    """One eye of one subject.

    Attributes:
        oct: OCT intensities ``[H, W, D]``, float32, usually in ``[0, 1]``.
        spacing: voxel size in mm ``(dH, dW, dD)``; ``dD`` is the nominal B-scan spacing.
        subject: subject identifier (both eyes of a subject share it).
        laterality: ``"OD"`` (right) or ``"OS"`` (left).
        labels: layer labels ``[H, W, D]``, uint8, or ``None`` when the eye has none.
        slo: en-face (SLO) image ``[W, Ds]`` sampled at each A-scan, or ``None``.
        bscan_positions: slow-axis position of each B-scan ``[D]`` in mm; defaults to
            ``arange(D) * dD``.
        slo_positions: slow-axis position of each SLO column ``[Ds]`` in mm; defaults to
            ``bscan_positions`` (the SLO must then have ``D`` columns).
        meta: free-form provenance (scanner, import source, phantom parameters, ...).
    """

    oct: np.ndarray
    spacing: tuple[float, float, float]
    subject: str
    laterality: str
    labels: np.ndarray | None
    slo: np.ndarray | None
    bscan_positions: np.ndarray
    slo_positions: np.ndarray | None
    meta: dict[str, Any]

    def __init__(
        self,
        oct: ArrayLike,
        spacing: Sequence[float],
        subject: str,
        laterality: str = "OD",
        labels: ArrayLike | None = None,
        slo: ArrayLike | None = None,
        bscan_positions: ArrayLike | None = None,
        slo_positions: ArrayLike | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Check and normalise the record; inputs may be array-likes, attributes are arrays.

        Raises:
            DataError: a bad id, laterality, shape, spacing or position list.
        """
        self.subject = subject
        self.laterality = laterality
        self.meta = {} if meta is None else meta
        check_id(self.subject, "subject id")
        where = f"eye {self.subject}_{self.laterality}"
        if self.laterality not in LATERALITIES:
            raise DataError(f"{where}: laterality must be one of {LATERALITIES}, got {self.laterality!r}")
        self.oct = np.asarray(oct)
        if self.oct.ndim != 3:
            raise DataError(f"{where}: OCT must be [H, W, D], got shape {self.oct.shape}")
        values = tuple(float(s) for s in spacing)
        if len(values) != 3:
            raise DataError(f"{where}: spacing must have 3 values (dH, dW, dD) in mm, got {values}")
        self.spacing = (values[0], values[1], values[2])
        if not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise DataError(f"{where}: spacing {self.spacing} mm must be positive and finite")
        _, width, depth = self.oct.shape
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and self.labels.shape != self.oct.shape:
            raise DataError(f"{where}: labels shape {self.labels.shape} does not match OCT shape {self.oct.shape}")
        if bscan_positions is None:
            bscan_positions = np.arange(depth, dtype=np.float64) * self.spacing[2]
        self.bscan_positions = np.asarray(bscan_positions, dtype=np.float64)
        if self.bscan_positions.shape != (depth,):
            raise DataError(f"{where}: {self.bscan_positions.shape[0]} B-scan positions for {depth} B-scans")
        problem = positions_problem(self.bscan_positions)
        if problem is not None:
            raise DataError(f"{where}: {problem}")
        if slo is None:
            self.slo = None
            self.slo_positions = None
            return
        self.slo = np.asarray(slo)
        if self.slo.ndim != 2 or self.slo.shape[0] != width:
            raise DataError(f"{where}: SLO must be [W={width}, Ds], got shape {self.slo.shape}")
        if slo_positions is None:
            if self.slo.shape[1] != depth:
                raise DataError(
                    f"{where}: SLO has {self.slo.shape[1]} columns but the OCT has {depth} B-scans; "
                    "give slo_positions for an SLO sampled on another grid"
                )
            slo_positions = self.bscan_positions.copy()
        self.slo_positions = np.asarray(slo_positions, dtype=np.float64)
        if self.slo_positions.shape != (self.slo.shape[1],):
            raise DataError(f"{where}: {self.slo_positions.shape[0]} SLO positions for {self.slo.shape[1]} SLO columns")
        problem = positions_problem(self.slo_positions, "SLO positions")
        if problem is not None:
            raise DataError(f"{where}: {problem}")

    @property
    def eye_id(self) -> str:
        """``<subject>_<OD|OS>``: unique within a data set."""
        return f"{self.subject}_{self.laterality}"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, D)`` of the OCT volume."""
        return tuple(self.oct.shape)

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def has_slo(self) -> bool:
        return self.slo is not None

    def required_labels(self, needed_for: str) -> np.ndarray:
        """The labels ``[H, W, D]``; an eye without them is refused.

        Raises:
            DataError: the eye has no labels (``needed_for`` says what needs them).
        """
        if self.labels is None:
            raise DataError(f"eye {self.eye_id}: no labels; {needed_for} needs labelled eyes")
        return self.labels

    def select_bscans(self, index: np.ndarray | list[int] | slice) -> Eye:
        """A new eye holding only the chosen B-scans, at their original positions.

        The SLO stays whole: it still covers the gaps between the kept B-scans.
        """
        positions = self.bscan_positions[index]
        kept = np.atleast_1d(positions)
        spacing_d = float(np.median(np.diff(kept))) if kept.size > 1 else self.spacing[2]
        return replace(
            self,
            oct=self.oct[:, :, index],
            labels=None if self.labels is None else self.labels[:, :, index],
            bscan_positions=kept,
            spacing=(self.spacing[0], self.spacing[1], spacing_d),
            meta=dict(self.meta),
        )

    def subsample(self, factor: int, offset: int = 0) -> Eye:
        """Every ``factor``-th B-scan starting at ``offset``; positions are kept exactly."""
        if factor < 1:
            raise DataError(f"B-scan subsampling factor must be >= 1, got {factor}")
        if not 0 <= offset < max(factor, 1) or offset >= self.shape[2]:
            raise DataError(f"B-scan offset must be in [0, {factor}) and below D={self.shape[2]}, got {offset}")
        sub = self.select_bscans(slice(offset, None, factor))
        sub.meta["subsample_factor"] = factor * int(self.meta.get("subsample_factor", 1))
        return sub

    def slo_at(self, positions: np.ndarray) -> np.ndarray:
        """SLO columns ``[W, len(positions)]`` at arbitrary slow-axis positions (mm).

        Linear interpolation between SLO columns; positions outside the SLO take the
        nearest edge column.
        """
        if self.slo is None or self.slo_positions is None:
            raise DataError(f"eye {self.eye_id} has no SLO")
        positions = np.asarray(positions, dtype=np.float64)
        grid = self.slo_positions
        if grid.size == 1:
            return np.repeat(self.slo[:, :1], positions.size, axis=1).astype(np.float32)
        upper = np.clip(np.searchsorted(grid, positions, side="right"), 1, grid.size - 1)
        lower = upper - 1
        weight = np.clip((positions - grid[lower]) / (grid[upper] - grid[lower]), 0.0, 1.0)
        slo = self.slo.astype(np.float32)
        return (slo[:, lower] * (1.0 - weight) + slo[:, upper] * weight).astype(np.float32)
