"""The one writer of result tables both trees use: per-eye CSVs, every row, mean ± std summaries."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from retina_data.errors import OutputExistsError
from retina_data.result_tables import Metric, Summary, csv_text, numeric_columns, table_names, write_result_tables

METRICS = (Metric("dice", "Dice", ".3f"), Metric("assd", "ASSD (µm)", ".1f", scale=1000.0))


def rows() -> list[dict]:
    return [
        {"eye_id": "e1", "method": "ginr", "factor": 1, "dice": 0.8, "assd": 0.010},
        {"eye_id": "e2", "method": "ginr", "factor": 1, "dice": 0.9, "assd": 0.014},
        {"eye_id": "e1", "method": "affine", "factor": 1, "dice": 0.5, "assd": float("nan")},
        {"eye_id": "e1", "method": "ginr", "factor": 8, "dice": 0.7, "assd": None},
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_missing_values_are_empty_floats_exact_and_inf_kept() -> None:
    text = csv_text(
        [
            {"a": 0.1, "b": None},
            {"a": float("nan"), "b": np.int64(3), "c": float("inf")},
            {"a": np.float32(0.5), "b": "x"},
        ]
    )
    assert text == "a,b,c\n0.1,,\n,3,inf\n0.5,x,\n"


def test_numeric_columns_leave_out_text_bools_and_the_excluded() -> None:
    assert numeric_columns(
        [{"eye_id": "e", "factor": 1, "ok": True, "dice": None}, {"dice": 0.5}], exclude=["factor"]
    ) == ["dice"]


def test_mean_and_sample_std_per_group_over_the_values_present() -> None:
    summary = Summary.from_rows(rows(), ("method", "factor"), METRICS)
    assert summary.groups == [("ginr", 1), ("affine", 1), ("ginr", 8)]
    assert summary.mean("ginr", 1, "dice") == pytest.approx(0.85)
    assert summary.std("ginr", 1, "dice") == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert summary.statistic("affine", 1, "assd").n == 0  # NaN is not a value
    assert math.isnan(summary.std("ginr", 8, "dice"))  # one eye
    assert summary.n_eyes("ginr", 1) == 2


def test_markdown_shows_mean_plus_minus_std_scaled_with_headings_and_names() -> None:
    summary = Summary.from_rows(
        rows(), ("method", "factor"), METRICS, headings={"method": "Method"}, names={"ginr": "GINR"}
    )
    lines = summary.table_markdown().splitlines()
    assert lines[0] == "| Method | factor | n_eyes | Dice | ASSD (µm) |"
    assert lines[1] == "|---|---|---|---:|---:|"
    assert lines[2] == "| GINR | 1 | 2 | 0.850 ± 0.071 | 12.0 ± 2.8 |"
    assert lines[3] == "| affine | 1 | 1 | 0.500 | – |"
    assert summary.table_markdown(["assd", "absent"]).splitlines()[0] == "| Method | factor | n_eyes | ASSD (µm) |"


def test_a_separate_std_format_and_a_group_order() -> None:
    summary = Summary.from_rows(
        rows(),
        ("method", "factor"),
        [Metric("dice", spec=".4g", std_spec=".2g")],
        group_order=lambda group: group[1] != 8,
    )
    assert summary.groups[0] == ("ginr", 8)
    assert "| ginr | 1 | 2 | 0.85 ± 0.071 |" in summary.table_markdown()


def test_an_infinite_value_leaves_the_std_undefined() -> None:
    summary = Summary.from_rows(
        [{"eye_id": "a", "m": "x", "psnr": float("inf")}, {"eye_id": "b", "m": "x", "psnr": 30.0}],
        ("m",),
        [Metric("psnr")],
    )
    assert summary.mean("x", "psnr") == float("inf") and math.isnan(summary.std("x", "psnr"))


def test_write_result_tables_writes_every_file_of_a_protocol(tmp_path: Path) -> None:
    summary = Summary.from_rows(rows(), ("method", "factor"), METRICS)
    written = write_result_tables(tmp_path, summary, protocol="reference")
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "metrics_reference/e1.csv",
        "metrics_reference/e2.csv",
        "metrics_all_reference.csv",
        "summary_reference.csv",
        "summary_reference.md",
    }
    assert [r["method"] for r in read_csv(tmp_path / "metrics_reference" / "e1.csv")] == ["ginr", "affine", "ginr"]
    table = read_csv(tmp_path / "summary_reference.csv")
    assert list(table[0]) == ["method", "factor", "n_eyes", "dice_mean", "dice_std", "assd_mean", "assd_std"]
    assert table[1]["assd_mean"] == "" and float(table[0]["dice_mean"]) == pytest.approx(0.85)
    assert (tmp_path / "summary_reference.md").read_text() == summary.table_markdown()


def test_all_rows_may_hold_more_than_the_summary(tmp_path: Path) -> None:
    summary = Summary.from_rows(rows()[:1], ("method",), METRICS)
    write_result_tables(tmp_path, summary, all_rows=rows(), per_eye=False)
    assert len(read_csv(tmp_path / table_names().all_rows)) == 4
    assert not (tmp_path / "metrics").exists()
    assert read_csv(tmp_path / "summary.csv")[0]["n_eyes"] == "1"


def test_nothing_is_written_over_existing_tables_without_overwrite(tmp_path: Path) -> None:
    summary = Summary.from_rows(rows(), ("method",), METRICS)
    write_result_tables(tmp_path, summary)
    (tmp_path / "summary.md").write_text("keep")
    (tmp_path / "metrics" / "e2.csv").unlink()
    with pytest.raises(OutputExistsError):
        write_result_tables(tmp_path, summary)
    assert (tmp_path / "summary.md").read_text() == "keep" and not (tmp_path / "metrics" / "e2.csv").exists()
    write_result_tables(tmp_path, summary, overwrite=True)
    assert (tmp_path / "summary.md").read_text() == summary.table_markdown()
