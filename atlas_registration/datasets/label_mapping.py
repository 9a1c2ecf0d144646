"""Merging the 13 layer classes (and the fluid label) into the atlas's 10 classes.

The atlas is built and scored on fewer classes than the data set holds. Our data sets label
13 classes (``retina_data.labels``: 0 background .. 12 choroid) and an optional
subretinal-fluid label 13. The default mapping is the reference code's:

====================  ===================  =====================================
source labels         atlas label          why
====================  ===================  =====================================
0 background          0 background
1 RNFL .. 6 ONL       1 .. 6 (unchanged)   thick, well separated inner layers
7 IS, 8 EZ            7 IS+EZ              thin photoreceptor bands merged pairwise
9 OS, 10 IZ           8 OS+IZ
11 RPE                9 RPE
12 choroid            0 background         the reference sets every other value to 0
13 SRF (fluid)        0 background         (it has no fluid class)
====================  ===================  =====================================

That gives exactly 10 classes, one-hot encoded for the label loss. A data set in which the
choroid or fluid should be scored gives the table in the config (``LABELS.MAPPING``).

A mapping from a config is a ``{source: target}`` table that must name every source
label 0..13 (so that no label is silently dropped) and whose targets must be exactly
``0..K-1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from retina_data.errors import ConfigError, DataError
from retina_data.labels import FLUID_LABEL, label_names

SOURCE_LABELS: tuple[int, ...] = tuple(range(FLUID_LABEL + 1))
"""Every label a data set can hold: the 13 layer classes and the fluid label."""

DEFAULT_MAPPING: dict[int, int] = {
    0: 0,
    1: 1,
    2: 2,
    3: 3,
    4: 4,
    5: 5,
    6: 6,
    7: 7,
    8: 7,
    9: 8,
    10: 8,
    11: 9,
    12: 0,
    FLUID_LABEL: 0,
}
DEFAULT_NAMES: tuple[str, ...] = (
    "background",
    "RNFL",
    "GCL",
    "IPL",
    "INL",
    "OPL",
    "ONL",
    "IS+EZ",
    "OS+IZ",
    "RPE",
)


@dataclass(frozen=True)
class LabelMapping:
    """A validated many-to-one relabelling of the source labels.

    Attributes:
        table: ``{source label: target label}`` for every source label 0..13.
        names: one name per target label, indexed by target value.
    """

    table: dict[int, int]
    names: tuple[str, ...]

    @classmethod
    def default(cls) -> LabelMapping:
        """The reference's 10-class mapping described in the module docstring."""
        return cls.from_config(None)

    @classmethod
    def from_config(
        cls, mapping: Mapping[int, int] | None, names: list[str] | tuple[str, ...] | None = None
    ) -> LabelMapping:
        """Build and validate a mapping; ``None`` gives the default 10-class mapping.

        Args:
            mapping: ``{source: target}``; keys may be ints or int-like strings (YAML).
            names: target class names; by default the source names of each target joined
                with ``+`` (the fluid name left out where it joins layer classes).

        Raises:
            ConfigError: a source label missing or unknown, a non-integer entry, or targets
                that are not exactly ``0..K-1``, or the wrong number of names.
        """
        if mapping is None:
            table = dict(DEFAULT_MAPPING)
            names = DEFAULT_NAMES if names is None else names
        else:
            table = _parse_table(mapping)
        targets = sorted(set(table.values()))
        if targets != list(range(len(targets))):
            raise ConfigError(f"label mapping: target labels must be contiguous 0..K-1, got {targets}")
        if names is None:
            names = _joined_names(table, len(targets))
        names = tuple(str(n) for n in names)
        if len(names) != len(targets):
            raise ConfigError(f"label mapping: {len(names)} class names given for {len(targets)} target classes")
        return cls(table=table, names=names)

    @property
    def num_classes(self) -> int:
        """Number of target classes ``K``."""
        return len(self.names)

    @property
    def lookup(self) -> np.ndarray:
        """Lookup table ``[256]`` uint8: target of each source value, 255 where unmapped."""
        lut = np.full(256, 255, dtype=np.uint8)
        for source, target in self.table.items():
            lut[source] = target
        return lut

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Relabel ``labels`` (any shape, integer) to target labels (same shape, uint8).

        Raises:
            DataError: ``labels`` holds a value outside the source labels 0..13.
        """
        labels = np.asarray(labels)
        if labels.size == 0:
            return labels.astype(np.uint8)
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > max(self.table):
            raise DataError(f"label mapping: labels must lie in 0..{max(self.table)}, found values in {low}..{high}")
        return self.lookup[labels.astype(np.intp, copy=False)]


def _parse_table(mapping: Mapping[int, int]) -> dict[int, int]:
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"label mapping: expected a {{source: target}} mapping, got {type(mapping).__name__}")
    table: dict[int, int] = {}
    for key, value in mapping.items():
        source, target = _as_label(key), _as_label(value)
        if source is None or target is None:
            raise ConfigError(f"label mapping: entry {key!r}: {value!r} must map an integer label to an integer label")
        if source not in SOURCE_LABELS:
            raise ConfigError(f"label mapping: unknown source label {key!r}; source labels are 0..{FLUID_LABEL}")
        table[source] = target
    missing = [label for label in SOURCE_LABELS if label not in table]
    if missing:
        raise ConfigError(
            f"label mapping: source labels {missing} are not mapped; every label 0..{FLUID_LABEL} needs a target"
        )
    return table


def _as_label(value: object) -> int | None:
    """``value`` as an int label (ints and int-like strings), ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _joined_names(table: dict[int, int], num_classes: int) -> tuple[str, ...]:
    source_names = label_names(with_fluid=True)
    names = []
    for target in range(num_classes):
        sources = [s for s in SOURCE_LABELS if table[s] == target]
        layers = [s for s in sources if s != FLUID_LABEL] or sources
        names.append("+".join(source_names[s] for s in layers))
    return tuple(names)
