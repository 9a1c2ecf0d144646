"""Scoring on gap/input B-scans and the result files of an evaluation run."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from anisotropic_interpolation import evaluation
from anisotropic_interpolation.baselines import METHODS, classical_baselines
from anisotropic_interpolation.evaluation import (
    MethodPrediction,
    RunEvaluator,
    evaluate_run,
    input_mask_from_positions,
    score_eye,
)
from anisotropic_interpolation.plots import choose_gap_bscan
from anisotropic_interpolation.reporting import print_summary, summarise
from retina_data import metrics
from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import Eye
from retina_data.labels import LAYER_LABEL_NAMES
from retina_data.nifti import read_nifti
from retina_data.phantom import PhantomConfig, make_eye

SHAPE = (48, 40, 16)
FACTOR = 4


def _case(eye: Eye) -> tuple[Eye, np.ndarray, dict[str, MethodPrediction]]:
    """The eye, its input mask (every FACTOR-th B-scan) and the classical baselines."""
    sparse = eye.subsample(FACTOR)
    mask = input_mask_from_positions(eye.bscan_positions, sparse.bscan_positions)
    return eye, mask, classical_baselines(sparse, eye.bscan_positions)


@pytest.fixture(scope="module")
def healthy():
    return _case(make_eye(PhantomConfig(n_subjects=1, shape=SHAPE), 0, "OD"))


@pytest.fixture(scope="module")
def fluid():
    return _case(make_eye(PhantomConfig(n_subjects=1, shape=SHAPE, pathology_fraction=1.0), 0, "OS"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, healthy, fluid):
    """An evaluation of two eyes (one with fluid) written to a fresh folder."""
    out = tmp_path_factory.mktemp("evaluation")
    eyes = [healthy[0], fluid[0]]
    masks = {eye.eye_id: case[1] for eye, case in zip(eyes, (healthy, fluid))}
    predictions = {eye.eye_id: case[2] for eye, case in zip(eyes, (healthy, fluid))}
    summary, _ = evaluate_run(eyes, masks, predictions, out, num_classes=14)
    return out, eyes, masks, predictions, summary


def _rows(rows: list[dict], method: str, subset: str) -> dict:
    (row,) = [r for r in rows if r["method"] == method and r["subset"] == subset]
    return row


# --- score_eye ---------------------------------------------------------------------------


def test_input_mask_marks_the_acquired_bscans(healthy):
    _, mask, _ = healthy
    np.testing.assert_array_equal(np.flatnonzero(mask), np.arange(0, SHAPE[2], FACTOR))


def test_input_position_missing_from_the_truth_is_refused(healthy):
    eye = healthy[0]
    with pytest.raises(DataError, match="match no B-scan"):
        input_mask_from_positions(eye.bscan_positions, eye.bscan_positions[:2] + 0.01)


def test_input_rows_of_every_baseline_are_perfect(healthy):
    rows = score_eye(*healthy)
    for method in METHODS:
        row = _rows(rows, method, "input")
        assert row["mse"] == 0.0 and row["mae"] == 0.0 and row["psnr"] == float("inf")
        assert row["ssim"] == pytest.approx(1.0)
        assert row["dice_mean"] == 1.0 and row["assd_mean"] == 0.0 and row["hd95_mean"] == 0.0


def test_gap_rows_equal_the_metrics_of_the_gap_subvolume(healthy):
    eye, mask, predictions = healthy
    row = _rows(score_eye(eye, mask, predictions), "cubic", "gap")
    gap = ~mask
    intensity, truth = predictions["cubic"].intensity[:, :, gap], eye.oct[:, :, gap]
    labels, true_labels = predictions["cubic"].labels[:, :, gap], eye.labels[:, :, gap]
    assert row["n_bscans"] == SHAPE[2] - SHAPE[2] // FACTOR
    assert row["psnr"] == pytest.approx(metrics.psnr(intensity, truth))
    assert row["ssim"] == pytest.approx(metrics.ssim(intensity, truth))
    assert row["mae"] == pytest.approx(metrics.mae(intensity, truth))
    dice = metrics.dice_per_class(labels, true_labels, 13)
    assert row["dice_mean"] == pytest.approx(metrics.foreground_mean(dice)) and row["dice_GCL"] == dice[2]
    boundaries = metrics.boundary_surface_errors(labels, true_labels, eye.spacing)
    assert row["assd_mean"] == pytest.approx(np.nanmean(boundaries["assd"]))
    assert row["hd95_mean"] == pytest.approx(np.nanmean(boundaries["hd95"]))
    assert row["mse"] > 0 and row["dice_mean"] < 1


def test_rows_come_gap_first_with_a_dice_column_per_class(healthy):
    rows = score_eye(*healthy)
    assert [r["subset"] for r in rows] == ["gap"] * 3 + ["input"] * 3 + ["all"] * 3
    assert [k for k in rows[0] if k.startswith("dice_") and k != "dice_mean"] == [
        f"dice_{name}" for name in LAYER_LABEL_NAMES
    ]
    assert "fluid_dice" not in rows[0]


def test_fluid_eye_gets_the_pathology_columns(fluid):
    row = _rows(score_eye(*fluid), "nearest", "input")
    assert row["dice_SRF"] == 1.0
    assert (row["retina_dice"], row["fluid_dice"], row["ilm_assd"]) == (1.0, 1.0, 0.0)


def test_fluid_gap_scores_equal_the_metrics_of_the_gap_subvolume(fluid):
    eye, mask, predictions = fluid
    row = _rows(score_eye(eye, mask, predictions), "linear", "gap")
    labels, truth = predictions["linear"].labels[:, :, ~mask], eye.labels[:, :, ~mask]
    assert row["retina_dice"] == pytest.approx(metrics.retina_dice(labels, truth))
    assert row["fluid_dice"] == pytest.approx(metrics.fluid_dice(labels, truth))
    assert row["ilm_assd"] == pytest.approx(metrics.ilm_assd(labels, truth, eye.spacing))
    assert 0 < row["fluid_dice"] < 1


def test_fluid_eye_with_too_few_classes_is_refused(fluid):
    with pytest.raises(DataError, match="holds label 13 but num_classes is 13"):
        score_eye(*fluid, num_classes=13)


def test_predicted_fluid_in_a_healthy_eye_adds_the_fluid_class(healthy):
    eye, mask, predictions = healthy
    labels = predictions["nearest"].labels.copy()
    labels[0, 0, 1] = 13  # one voxel of fluid in a gap B-scan
    rows = score_eye(eye, mask, {"odd": MethodPrediction(predictions["nearest"].intensity, labels)})
    assert _rows(rows, "odd", "gap")["dice_SRF"] == 0.0 and "fluid_dice" not in rows[0]


def test_intensity_only_eye_leaves_the_label_columns_empty(healthy):
    eye, mask, _ = healthy
    bare = replace(eye, labels=None)
    rows = score_eye(bare, mask, classical_baselines(bare.subsample(FACTOR), eye.bscan_positions))
    row = _rows(rows, "cubic", "gap")
    assert row["dice_mean"] is None and row["dice_RNFL"] is None and row["hd95_mean"] is None
    assert row["psnr"] > 0


def test_prediction_of_the_wrong_shape_is_refused(healthy):
    eye, mask, _ = healthy
    wrong = {"linear": MethodPrediction(intensity=np.zeros((4, 4, 4), np.float32))}
    with pytest.raises(DataError, match="predicted shape"):
        score_eye(eye, mask, wrong)


def test_unavailable_lpips_leaves_the_column_empty_with_a_notice(healthy, monkeypatch, capsys):
    monkeypatch.setattr(metrics, "lpips_available", lambda: False)
    evaluation._lpips_unavailable_notice.cache_clear()
    rows = score_eye(*healthy, lpips=True)
    score_eye(*healthy, lpips=True)
    assert all(row["lpips"] is None for row in rows)
    assert capsys.readouterr().out.count("LPIPS skipped") == 1


# --- summary -----------------------------------------------------------------------------


def test_summary_mean_and_std_are_over_eyes():
    rows = [
        {"eye_id": f"e{i}", "method": "m", "subset": "gap", "psnr": value, "dice_mean": None}
        for i, value in enumerate([20.0, 22.0, 27.0])
    ]
    summary = summarise(rows)
    assert summary.mean("m", "gap", "psnr") == pytest.approx(23.0)
    assert summary.std("m", "gap", "psnr") == pytest.approx(np.std([20, 22, 27], ddof=1))
    assert "23.00 ± 3.61" in summary.table_markdown()
    assert [metric.column for metric in summary.metrics] == ["psnr"]


def test_markdown_shows_boundary_distances_in_micrometres():
    rows = [{"eye_id": "e0", "method": "m", "subset": "gap", "assd_mean": 0.0039}]
    summary = summarise(rows)
    assert summary.mean("m", "gap", "assd_mean") == 0.0039
    assert "ASSD (µm)" in summary.table_markdown() and "| 3.90 |" in summary.table_markdown()


def test_print_summary_writes_the_markdown_table(run, capsys):
    summary = run[4]
    print_summary(summary)
    assert capsys.readouterr().out == summary.table_markdown()


# --- evaluate_run ------------------------------------------------------------------------


def test_run_writes_every_result_file(run):
    out, eyes, _, predictions, _ = run
    for eye in eyes:
        assert (out / "metrics" / f"{eye.eye_id}.csv").is_file()
        assert (out / "figures" / f"{eye.eye_id}.png").is_file()
        for method in predictions[eye.eye_id]:
            assert (out / "nifti" / f"{eye.eye_id}_{method}_labels.nii.gz").is_file()
    assert {p.name for p in out.iterdir() if p.is_file()} == {
        "metrics_all.csv",
        "summary.csv",
        "summary.md",
        "metrics_all_reference.csv",
        "summary_reference.csv",
        "summary_reference.md",
        "metrics_all_thickness.csv",
        "summary_thickness.csv",
        "summary_thickness.md",
    }
    assert (out / "nifti" / "label_names.itksnap.txt").is_file() and (out / "nifti" / "label_names.ctbl").is_file()


def test_thickness_errors_are_zero_for_the_true_labels_and_the_lost_layer_for_a_missing_one(run):
    from anisotropic_interpolation.evaluation import MethodPrediction, thickness_errors
    from retina_data.thickness import SECTORS, etdrs_table

    eye = run[1][0]
    no_rnfl = np.where(eye.labels == 1, 0, eye.labels).astype(np.uint8)  # the RNFL called vitreous
    predictions = {"truth": MethodPrediction(eye.oct, eye.labels), "no_rnfl": MethodPrediction(eye.oct, no_rnfl)}
    rows = {(row["method"], row["group"]): row for row in thickness_errors(eye, predictions)}
    true = {row["group"]: row for row in etdrs_table(eye)}
    for sector in SECTORS:
        assert rows[("truth", "retina")][sector] in (0.0,) or np.isnan(rows[("truth", "retina")][sector])
        assert rows[("no_rnfl", "RNFL")][sector] == pytest.approx(true["RNFL"][sector], nan_ok=True)
        assert rows[("no_rnfl", "retina")][sector] == pytest.approx(true["RNFL"][sector], nan_ok=True)
        assert rows[("no_rnfl", "GCL")][sector] in (0.0,) or np.isnan(rows[("no_rnfl", "GCL")][sector])


def test_nifti_volumes_carry_spacing_and_bscan_positions(run):
    out, eyes, _, predictions, _ = run
    eye = eyes[0]
    path = out / "nifti" / f"{eye.eye_id}_cubic_intensity.nii.gz"
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(image.GetSpacing(), eye.spacing, rtol=1e-6)
    stored = read_nifti(path)
    np.testing.assert_allclose(stored.positions, eye.bscan_positions)
    np.testing.assert_array_equal(stored.array, predictions[eye.eye_id]["cubic"].intensity)
    labels = read_nifti(out / "nifti" / f"{eye.eye_id}_cubic_labels.nii.gz").array
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, predictions[eye.eye_id]["cubic"].labels)


def test_per_eye_json_is_strict_and_matches_the_csv(run):
    out, eyes, masks, _, _ = run
    eye = eyes[1]
    record = json.loads(
        (out / "metrics" / f"{eye.eye_id}.json").read_text(),
        parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"),
    )
    assert record["input_bscans"] == np.flatnonzero(masks[eye.eye_id]).tolist()
    with open(out / "metrics" / f"{eye.eye_id}.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(record["rows"]) == 9
    assert [float(row["mse"]) for row in table] == [row["mse"] for row in record["rows"]]
    assert record["rows"][3]["psnr"] == "inf" and table[3]["psnr"] == "inf"


def test_summary_files_hold_mean_and_std_with_gap_rows_first(run):
    out, _, _, _, summary = run
    with open(out / "summary.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["subset"] for row in table] == ["gap"] * 3 + ["input"] * 3 + ["all"] * 3
    assert float(table[1]["psnr_mean"]) == pytest.approx(summary.mean("linear", "gap", "psnr"))
    markdown = (out / "summary.md").read_text()
    assert markdown == summary.table_markdown()
    assert "±" in markdown.splitlines()[2] and "Fluid Dice" in markdown.splitlines()[0]


def test_summary_means_are_the_means_of_the_eye_rows(run):
    _, eyes, _, _, summary = run
    values = [r["dice_mean"] for r in summary.rows if r["method"] == "nearest" and r["subset"] == "gap"]
    assert len(values) == len(eyes)
    assert summary.mean("nearest", "gap", "dice_mean") == pytest.approx(np.mean(values))


def test_existing_results_are_refused_unless_overwrite(healthy, tmp_path: Path):
    eye, mask, predictions = healthy
    args = ([eye], {eye.eye_id: mask}, {eye.eye_id: predictions}, tmp_path)
    evaluate_run(*args, save_nifti=False, figures=False)
    before = (tmp_path / "summary.md").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="already holds evaluation results"):
        evaluate_run(*args, save_nifti=False, figures=False)
    assert (tmp_path / "summary.md").stat().st_mtime_ns == before
    evaluate_run(*args, save_nifti=False, figures=False, overwrite=True)
    assert (tmp_path / "summary.md").stat().st_mtime_ns != before


def test_an_eye_evaluated_twice_is_refused(healthy, tmp_path: Path):
    evaluator = RunEvaluator(tmp_path, save_nifti=False, figures=False)
    evaluator.add_eye(*healthy)
    with pytest.raises(DataError, match="already evaluated"):
        evaluator.add_eye(*healthy)


def test_a_run_without_eyes_has_no_summary(tmp_path: Path):
    with pytest.raises(DataError, match="no eye was evaluated"):
        RunEvaluator(tmp_path).finish()


def test_figure_shows_the_widest_interior_gap():
    positions = np.arange(12.0)
    mask = np.zeros(12, dtype=bool)
    mask[[0, 2, 7, 9]] = True  # gaps: 1 | 3-6 (widest: 4 and 5 are 2 away) | 8 | 10-11 (beyond the last input)
    assert choose_gap_bscan(positions, mask) == 5  # 4 and 5 tie; 5 is nearer the middle (5.5)


def test_figure_is_a_readable_png(run):
    out, eyes, _, _, _ = run
    with Image.open(out / "figures" / f"{eyes[1].eye_id}.png") as image:
        width, height = image.size
    assert width > 600 and height > 400


def test_missing_predictions_for_an_eye_are_refused(healthy, tmp_path: Path):
    eye, mask, _ = healthy
    with pytest.raises(DataError, match="no predictions"):
        evaluate_run([eye], {eye.eye_id: mask}, {}, tmp_path)
