"""Registration metrics on known label volumes, and the atlas tree's CSV / Markdown tables."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from atlas_registration.evaluation import registration_metrics, score
from atlas_registration.fitting import EyeRegistration
from atlas_registration.reporting import resolution_summary, resolution_table, summarise
from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import Eye
from retina_data.result_tables import write_result_tables

SPACING = (0.01, 0.05, 0.1)


def slab_labels(top_rows: int, shape: tuple[int, int, int] = (20, 8, 6)) -> np.ndarray:
    """Class 1 in the first ``top_rows`` rows, class 2 below (class 3 absent)."""
    labels = np.full(shape, 2, dtype=np.uint8)
    labels[:top_rows] = 1
    return labels


def test_identical_labels_score_perfectly() -> None:
    labels = slab_labels(10)
    row = registration_metrics(labels, labels, SPACING, num_classes=4)
    assert row["dice_1"] == row["dice_2"] == row["dice_mean"] == 1.0
    assert row["assd_mean"] == 0.0 and row["hd95_mean"] == 0.0


def test_classes_absent_from_both_volumes_are_nan_and_left_out_of_the_mean() -> None:
    row = registration_metrics(slab_labels(5), slab_labels(10), SPACING, num_classes=4)
    assert math.isnan(row["dice_0"]) and math.isnan(row["dice_3"])
    assert row["dice_1"] == pytest.approx(2 * 5 / (5 + 10))
    assert row["dice_2"] == pytest.approx(2 * 10 / (15 + 10))
    assert row["dice_mean"] == pytest.approx((row["dice_1"] + row["dice_2"]) / 2)


def test_surface_distance_of_a_five_row_shift_is_positive_and_in_mm() -> None:
    row = registration_metrics(slab_labels(5), slab_labels(10), SPACING, num_classes=3)
    assert 0.0 < row["assd_mean"] <= 5 * SPACING[0] + 1e-9
    assert row["hd95_mean"] == pytest.approx(5 * SPACING[0])


def test_optional_columns_appear_only_with_their_inputs() -> None:
    labels = slab_labels(10)
    intensity = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    bare = registration_metrics(labels, labels, SPACING, 3)
    full = registration_metrics(
        labels,
        labels,
        SPACING,
        3,
        warped_intensity=intensity,
        target_intensity=intensity,
        displacement_mm=np.zeros((3, *labels.shape)),
        seconds=2.5,
    )
    assert not {"ssim", "pct_nonpositive_jacobian", "time_s"} & set(bare)
    assert full["ssim"] == pytest.approx(1.0)
    assert full["pct_nonpositive_jacobian"] == 0.0
    assert full["time_s"] == 2.5


def test_ssim_needs_both_intensities() -> None:
    labels = slab_labels(10)
    with pytest.raises(ValueError, match="give both warped_intensity and target_intensity"):
        registration_metrics(labels, labels, SPACING, 3, target_intensity=np.zeros(labels.shape, np.float32))


def test_scoring_against_an_eye_without_labels_names_the_eye() -> None:
    labels = slab_labels(10)
    registration = EyeRegistration(labels, np.zeros(labels.shape, np.float32), np.zeros((3, *labels.shape)), 1.0)
    unlabelled = Eye(np.zeros(labels.shape, np.float32), SPACING, "sub001", "OS")
    with pytest.raises(DataError, match="eye sub001_OS: no labels; scoring a registration needs labelled eyes"):
        score(registration, unlabelled, num_classes=3)
    labelled = Eye(np.zeros(labels.shape, np.float32), SPACING, "sub001", "OS", labels=labels)
    assert score(registration, labelled, num_classes=3)["dice_mean"] == 1.0


def test_a_folding_displacement_is_reported_in_percent() -> None:
    labels = slab_labels(10)
    grid = np.arange(labels.shape[0])[:, None, None] * SPACING[0] * np.ones(labels.shape)
    displacement = np.zeros((3, *labels.shape))
    displacement[0] = -2.0 * grid  # det = 1 - 2 everywhere
    row = registration_metrics(labels, labels, SPACING, 3, displacement_mm=displacement)
    assert row["pct_nonpositive_jacobian"] == 100.0


def rows() -> list[dict]:
    return [
        {"eye_id": "sub001_OD", "method": "affine", "factor": 1, "dice_mean": 0.8, "time_s": 1.0},
        {"eye_id": "sub001_OD", "method": "ginr", "factor": 1, "dice_mean": 0.9, "time_s": 3.0},
        {"eye_id": "sub002_OS", "method": "affine", "factor": 1, "dice_mean": 0.9, "time_s": 2.0},
        {"eye_id": "sub002_OS", "method": "ginr", "factor": 1, "dice_mean": 0.9, "time_s": 5.0},
        {"eye_id": "sub001_OD", "method": "ginr", "factor": 8, "dice_mean": 0.85, "time_s": float("nan")},
    ]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_tables_hold_every_row_and_one_file_per_eye(tmp_path: Path) -> None:
    write_result_tables(tmp_path, summarise(rows()))
    assert len(read_csv(tmp_path / "metrics_all.csv")) == 5
    per_eye = read_csv(tmp_path / "metrics" / "sub002_OS.csv")
    assert [r["method"] for r in per_eye] == ["affine", "ginr"]
    assert float(per_eye[1]["time_s"]) == 5.0


def test_summary_has_mean_and_sample_std_per_method_and_factor(tmp_path: Path) -> None:
    write_result_tables(tmp_path, summarise(rows()))
    summary = {(r["method"], r["factor"]): r for r in read_csv(tmp_path / "summary.csv")}
    affine = summary[("affine", "1")]
    assert affine["n_eyes"] == "2"
    assert float(affine["dice_mean_mean"]) == pytest.approx(0.85)
    assert float(affine["dice_mean_std"]) == pytest.approx(np.std([0.8, 0.9], ddof=1))
    single = summary[("ginr", "8")]
    assert single["dice_mean_std"] == "" and single["time_s_mean"] == ""  # one eye; no time


def test_summary_markdown_shows_mean_plus_minus_std(tmp_path: Path) -> None:
    write_result_tables(tmp_path, summarise(rows()))
    markdown = (tmp_path / "summary.md").read_text()
    assert markdown.splitlines()[0] == "| method | factor | n_eyes | dice_mean | time_s |"
    assert "| affine | 1 | 2 | 0.85 ± 0.071 | 1.5 ± 0.71 |" in markdown


def test_existing_tables_are_kept_without_overwrite(tmp_path: Path) -> None:
    write_result_tables(tmp_path, summarise(rows()))
    (tmp_path / "metrics_all.csv").write_text("keep")
    with pytest.raises(OutputExistsError):
        write_result_tables(tmp_path, summarise(rows()[:1]))
    assert (tmp_path / "metrics_all.csv").read_text() == "keep"
    write_result_tables(tmp_path, summarise(rows()[:1]), overwrite=True)
    assert len(read_csv(tmp_path / "metrics_all.csv")) == 1


def test_resolution_summary_groups_by_method_and_factor() -> None:
    results = resolution_summary(rows())
    assert set(results) == {"affine", "ginr"}
    assert results["ginr"][1] == (pytest.approx(0.9), pytest.approx(0.0))
    assert results["ginr"][8][0] == pytest.approx(0.85)


def test_resolution_table_has_a_column_per_factor() -> None:
    table = resolution_table(rows()).splitlines()
    assert table[2] == "| method | full | 1/8 | 1/16 | 1/32 |"
    assert table[4] == "| affine | 0.85 ± 0.071 | – | – | – |"
    assert table[5] == "| ginr | 0.9 ± 0 | 0.85 | – | – |"


def test_the_paper_protocol_writes_its_own_tables_beside_ours(tmp_path: Path) -> None:
    write_result_tables(tmp_path, summarise(rows()))
    written = write_result_tables(tmp_path, summarise(rows()[:2]), protocol="reference")
    names = {path.relative_to(tmp_path).as_posix() for path in written}
    assert names == {
        "metrics_reference/sub001_OD.csv",
        "metrics_all_reference.csv",
        "summary_reference.csv",
        "summary_reference.md",
    }
    assert (tmp_path / "metrics" / "sub002_OS.csv").is_file()  # ours is left as it was
    assert "| affine | 1 | 1 | 0.8 | 1 |" in (tmp_path / "summary_reference.md").read_text()


def test_summary_markdown_shows_only_the_chosen_metrics() -> None:
    table = summarise(rows()).table_markdown(["time_s", "missing"])
    assert table.splitlines()[0] == "| method | factor | n_eyes | time_s |"
