"""Result tables of an evaluation, written the same way by both trees.

One row (a flat ``dict``) per eye, method and whatever else the caller groups by (the
interpolation tree: B-scan ``subset``; the atlas tree: B-scan ``factor``). For a protocol
``p`` (``""`` for ours, ``"reference"`` for the paper's) the files under a results folder are::

    metrics<_p>/<eye_id>.csv    the rows of one eye (optional: per_eye)
    metrics_all<_p>.csv         every row
    summary<_p>.csv             per group: its keys, n_eyes, <metric>_mean, <metric>_std
    summary<_p>.md              the same as a Markdown table, "mean ± std"

Missing values (``None`` or NaN: a score that is undefined, a column that does not apply)
are empty in CSV; floats are written with ``repr`` (``inf`` stays ``inf``). The mean and the
sample standard deviation (``ddof = 1``) are over the non-missing values of a group; the std
is undefined (empty in CSV, only the mean in Markdown) for a single value or any infinite
one; a metric without values shows "–". Every file is written atomically
(:func:`retina_data.files.atomic_write_text`); with ``overwrite`` false nothing is written
when any of them exists.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from retina_data.files import atomic_write_text, refuse_existing

COUNT_COLUMN = "n_eyes"
"""The column of a summary that counts the eyes of a group."""


@dataclass(frozen=True)
class TableNames:
    """File and folder names of one protocol's tables (see the module docstring)."""

    eye_folder: str
    all_rows: str
    summary_csv: str
    summary_md: str


def table_names(protocol: str = "") -> TableNames:
    """``metrics/``, ``metrics_all.csv``, ``summary.csv|md`` for ours (``""``), each with ``_<protocol>``
    appended for another protocol."""
    suffix = f"_{protocol}" if protocol else ""
    return TableNames(f"metrics{suffix}", f"metrics_all{suffix}.csv", f"summary{suffix}.csv", f"summary{suffix}.md")


def is_missing(value: Any) -> bool:
    """``None`` or a NaN float: an empty cell."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def is_number(value: object) -> TypeGuard[int | float | np.integer | np.floating]:
    """A Python or NumPy int or float (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def columns_of(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Union of the rows' keys, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def numeric_columns(rows: Sequence[dict[str, Any]], exclude: Iterable[str] = ()) -> list[str]:
    """The columns (first-seen order, less ``exclude``) that hold a number in some row."""
    left_out = set(exclude)
    return [
        column
        for column in columns_of(rows)
        if column not in left_out and any(is_number(row.get(column)) for row in rows)
    ]


def cell_text(value: Any) -> str:
    """One CSV cell: empty when missing, ``repr`` of a float, the integer of an int, else ``str``."""
    if is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of ``rows``: a header with the union of their columns, one line per row."""
    columns = columns_of(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell_text(row.get(column)) for column in columns])
    return buffer.getvalue()


@dataclass(frozen=True)
class Metric:
    """A summarised column and how the Markdown table shows it.

    Attributes:
        column: the row key.
        title: the Markdown heading (default: ``column``).
        spec: number format of the mean (and of the std unless ``std_spec``).
        std_spec: number format of the std.
        scale: factor applied in Markdown only (mm stored, µm shown: 1000).
    """

    column: str
    title: str | None = None
    spec: str = ".4g"
    std_spec: str | None = None
    scale: float = 1.0

    @property
    def heading(self) -> str:
        return self.title or self.column


@dataclass(frozen=True)
class Statistic:
    """Mean and sample standard deviation (ddof = 1) of one metric over ``n`` values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Statistic:
        array = np.asarray(values, dtype=np.float64)
        if array.size == 0:
            return cls(float("nan"), float("nan"), 0)
        mean = float(array.mean())
        std = float(array.std(ddof=1)) if array.size > 1 and np.isfinite(array).all() else float("nan")
        return cls(mean, std, int(array.size))

    def format(self, metric: Metric) -> str:
        """``"mean ± std"`` times ``metric.scale``; the mean alone when the std is undefined; ``–`` without values."""
        if self.n == 0:
            return "–"
        mean = format(self.mean * metric.scale, metric.spec)
        if math.isnan(self.std):
            return mean
        return f"{mean} ± {format(self.std * metric.scale, metric.std_spec or metric.spec)}"


@dataclass
class Summary:
    """Rows and their statistics per group (the distinct values of ``keys``).

    ``summary.mean("linear", "gap", "psnr")`` is the mean of ``psnr`` over the eyes of the
    group ``(method, subset) = ("linear", "gap")``.

    Attributes:
        rows: the summarised rows.
        keys: the grouping columns, e.g. ``("method", "subset")``.
        groups: the groups in table order.
        metrics: the summarised metrics that have a value in some row, in the given order.
        statistics: ``{(*group, column): Statistic}``.
        headings: Markdown headings of the key columns and of ``n_eyes`` (default: their names).
        names: group value -> the name shown in Markdown (e.g. a method's long name).
    """

    rows: list[dict[str, Any]]
    keys: tuple[str, ...]
    groups: list[tuple[Any, ...]]
    metrics: list[Metric]
    statistics: dict[tuple[Any, ...], Statistic] = field(default_factory=dict)
    headings: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[dict[str, Any]],
        keys: Sequence[str],
        metrics: Sequence[Metric],
        *,
        group_order: Callable[[tuple[Any, ...]], Any] | None = None,
        headings: Mapping[str, str] | None = None,
        names: Mapping[str, str] | None = None,
    ) -> Summary:
        """Group ``rows`` by ``keys`` (first-seen order, then stably sorted by ``group_order`` if given)
        and summarise every metric of ``metrics`` that has a value in some row."""
        rows = list(rows)
        keys = tuple(keys)
        groups = list(dict.fromkeys(tuple(row.get(key) for key in keys) for row in rows))
        if group_order is not None:
            groups.sort(key=group_order)
        present = [metric for metric in metrics if any(_value(row, metric.column) is not None for row in rows)]
        members: dict[tuple[Any, ...], list[dict[str, Any]]] = {group: [] for group in groups}
        for row in rows:
            members[tuple(row.get(key) for key in keys)].append(row)
        statistics = {}
        for group, chosen in members.items():
            for metric in present:
                values = [value for value in (_value(row, metric.column) for row in chosen) if value is not None]
                statistics[(*group, metric.column)] = Statistic.of(values)
        return cls(rows, keys, groups, present, statistics, dict(headings or {}), dict(names or {}))

    def statistic(self, *group_and_column: Any) -> Statistic:
        """The :class:`Statistic` of the group's values (``*group``) then the metric column."""
        try:
            return self.statistics[group_and_column]
        except KeyError:
            raise KeyError(
                f"no statistic for {group_and_column!r}; groups {self.keys}: {self.groups}, "
                f"metrics: {[metric.column for metric in self.metrics]}"
            ) from None

    def mean(self, *group_and_column: Any) -> float:
        """Mean of a metric over the group's eyes."""
        return self.statistic(*group_and_column).mean

    def std(self, *group_and_column: Any) -> float:
        """Sample standard deviation of a metric over the group's eyes (NaN for one eye)."""
        return self.statistic(*group_and_column).std

    def n_eyes(self, *group: Any) -> int:
        """Number of distinct eyes (``eye_id``) in the group."""
        return self.eye_counts().get(group, 0)

    def eye_counts(self) -> dict[tuple[Any, ...], int]:
        """Distinct eyes (``eye_id``) of every group, in one pass over the rows (a table of a cohort
        has a group per eye)."""
        eyes: dict[tuple[Any, ...], set[Any]] = {}
        for row in self.rows:
            eyes.setdefault(tuple(row.get(key) for key in self.keys), set()).add(row.get("eye_id"))
        return {group: len(ids) for group, ids in eyes.items()}

    def table_rows(self) -> list[dict[str, Any]]:
        """Rows of ``summary.csv``: the group keys, ``n_eyes``, ``<metric>_mean``, ``<metric>_std``."""
        table = []
        counts = self.eye_counts()
        for group in self.groups:
            row: dict[str, Any] = {**dict(zip(self.keys, group)), COUNT_COLUMN: counts.get(group, 0)}
            for metric in self.metrics:
                stat = self.statistics[(*group, metric.column)]
                row[f"{metric.column}_mean"], row[f"{metric.column}_std"] = stat.mean, stat.std
            table.append(row)
        return table

    def table_markdown(self, columns: Sequence[str] | None = None) -> str:
        """The summary as a Markdown table, one ``mean ± std`` cell per metric; ``columns``: only
        these metric columns, those present, in this order (default: every metric)."""
        by_column = {metric.column: metric for metric in self.metrics}
        shown = self.metrics if columns is None else [by_column[c] for c in columns if c in by_column]
        header = [self.headings.get(key, key) for key in (*self.keys, COUNT_COLUMN)] + [m.heading for m in shown]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] * (len(self.keys) + 1) + ["---:"] * len(shown)) + "|",
        ]
        counts = self.eye_counts()
        for group in self.groups:
            cells = [self.names.get(str(value), str(value)) for value in group] + [str(counts.get(group, 0))]
            cells += [self.statistics[(*group, metric.column)].format(metric) for metric in shown]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _value(row: dict[str, Any], column: str) -> float | None:
    value = row.get(column)
    return float(value) if is_number(value) and not is_missing(value) else None


def eye_table_path(out_dir: str | Path, eye_id: str, protocol: str = "") -> Path:
    """``<out_dir>/metrics<_protocol>/<eye_id>.csv``."""
    return Path(out_dir) / table_names(protocol).eye_folder / f"{eye_id}.csv"


def write_result_tables(
    out_dir: str | Path,
    summary: Summary,
    *,
    all_rows: Sequence[dict[str, Any]] | None = None,
    protocol: str = "",
    per_eye: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Write one protocol's tables: per-eye CSVs (``per_eye``), every row, the summary as CSV and Markdown.

    Args:
        out_dir: the results folder.
        summary: the summary (:meth:`Summary.from_rows`) of the summarised rows.
        all_rows: the rows of ``metrics_all`` and of the per-eye files (default ``summary.rows``; a
            caller that leaves some eyes out of the summary gives them all here).
        protocol: ``""`` or a name appended to every file name (:func:`table_names`).
        per_eye: also write ``metrics<_protocol>/<eye_id>.csv`` (rows need ``eye_id``).
        overwrite: replace existing tables; otherwise nothing is written if any exists.

    Returns:
        Every path written.

    Raises:
        OutputExistsError: a table exists and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    rows = list(summary.rows if all_rows is None else all_rows)
    names = table_names(protocol)
    texts: dict[Path, str] = {}
    if per_eye:
        missing = [i for i, row in enumerate(rows) if "eye_id" not in row]
        if missing:
            raise ValueError(f"metric rows {missing} lack 'eye_id'")
        per_eye_rows: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            per_eye_rows.setdefault(str(row["eye_id"]), []).append(row)
        texts.update(
            {eye_table_path(out_dir, eye, protocol): csv_text(eye_rows) for eye, eye_rows in per_eye_rows.items()}
        )
    texts[out_dir / names.all_rows] = csv_text(rows)
    texts[out_dir / names.summary_csv] = csv_text(summary.table_rows())
    texts[out_dir / names.summary_md] = summary.table_markdown()
    for path in texts:
        refuse_existing(path, overwrite)
    return [atomic_write_text(path, text, overwrite=overwrite) for path, text in texts.items()]
