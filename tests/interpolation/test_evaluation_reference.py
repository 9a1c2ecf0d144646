"""The paper's metric set in a run: per-B-scan means in the paper's units, subject exclusion, method names."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from anisotropic_interpolation.baselines import classical_baselines
from anisotropic_interpolation.evaluation import evaluate_run, input_mask_from_positions, score_eye_reference
from retina_data.eye import Eye
from retina_data.phantom import PhantomConfig, make_eye

SHAPE = (48, 40, 16)


def _case(eye: Eye):
    sparse = eye.subsample(4)
    return (
        eye,
        input_mask_from_positions(eye.bscan_positions, sparse.bscan_positions),
        classical_baselines(sparse, eye.bscan_positions),
    )


@pytest.fixture(scope="module")
def healthy():
    return _case(make_eye(PhantomConfig(n_subjects=1, shape=SHAPE), 0, "OD"))


@pytest.fixture(scope="module")
def fluid():
    return _case(make_eye(PhantomConfig(n_subjects=2, shape=SHAPE, pathology_fraction=1.0), 1, "OS"))


def _row(rows, method, subset):
    (row,) = [r for r in rows if r["method"] == method and r["subset"] == subset]
    return row


def test_reference_psnr_and_ssim_are_means_over_gap_bscans_with_their_own_data_range(healthy) -> None:
    truth, mask, predictions = healthy
    row = _row(score_eye_reference(truth, mask, predictions), "linear", "gap")
    gaps = np.flatnonzero(~mask)
    pred = predictions["linear"].intensity.astype(np.float64)
    gt = truth.oct.astype(np.float64)
    ranges = [gt[:, :, d].max() - gt[:, :, d].min() for d in gaps]
    psnr = [peak_signal_noise_ratio(gt[:, :, d], pred[:, :, d], data_range=r) for d, r in zip(gaps, ranges)]
    ssim = [structural_similarity(gt[:, :, d], pred[:, :, d], data_range=r) for d, r in zip(gaps, ranges)]
    assert row["n_bscans"] == gaps.size
    assert row["psnr"] == pytest.approx(np.mean(psnr))
    assert row["ssim_x100"] == pytest.approx(100 * np.mean(ssim))
    assert row["mse_x100"] == pytest.approx(100 * np.mean((pred[:, :, gaps] - gt[:, :, gaps]) ** 2))
    assert row["mae_x100"] == pytest.approx(100 * np.mean(np.abs(pred[:, :, gaps] - gt[:, :, gaps])))


def test_reference_rows_score_the_input_bscans_of_a_classical_baseline_perfectly(healthy) -> None:
    truth, mask, predictions = healthy
    row = _row(score_eye_reference(truth, mask, predictions), "nearest", "input")
    assert row["psnr"] == np.inf and row["dice_pct"] == pytest.approx(100.0)
    assert row["assd_um"] == 0.0 and row["hd_um"] == 0.0


def test_border_distances_are_in_um_and_swapped_sampling_changes_them(healthy) -> None:
    truth, mask, predictions = healthy
    swapped = _row(score_eye_reference(truth, mask, predictions, sampling="swapped"), "linear", "gap")
    correct = _row(score_eye_reference(truth, mask, predictions, sampling="correct"), "linear", "gap")
    assert truth.spacing[0] != truth.spacing[1]
    assert swapped["assd_um"] > 0 and swapped["assd_um"] != pytest.approx(correct["assd_um"])


def test_fluid_eyes_get_the_cscr_columns(fluid) -> None:
    truth, mask, predictions = fluid
    row = _row(score_eye_reference(truth, mask, predictions), "linear", "all")
    assert 0 < row["retina_dice_pct"] <= 100 and 0 < row["fluid_dice_pct"] <= 100
    assert row["ilm_assd_um"] >= 0


def test_excluded_subjects_are_scored_but_left_out_of_both_summaries(healthy, fluid, tmp_path: Path) -> None:
    eyes = [healthy[0], fluid[0]]
    masks = {eye.eye_id: case[1] for eye, case in zip(eyes, (healthy, fluid))}
    predictions = {eye.eye_id: case[2] for eye, case in zip(eyes, (healthy, fluid))}
    names = {"linear": "linear (true input labels)"}
    summary, reference = evaluate_run(
        eyes,
        masks,
        predictions,
        tmp_path,
        save_nifti=False,
        figures=False,
        exclude_subjects=[fluid[0].subject],
        method_names=names,
    )
    assert summary.n_eyes("linear", "gap") == 1 and reference.n_eyes("linear", "gap") == 1
    with open(tmp_path / "metrics_all_reference.csv", newline="") as handle:
        assert {row["eye_id"] for row in csv.DictReader(handle)} == {eye.eye_id for eye in eyes}
    markdown = (tmp_path / "summary_reference.md").read_text()
    assert "| linear (true input labels) | gap | 1 |" in markdown and "Dice (%)" in markdown
    assert "| linear (true input labels) | gap |" in (tmp_path / "summary.md").read_text()
    with open(tmp_path / "summary_reference.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    gap_linear = next(row for row in table if row["method"] == "linear" and row["subset"] == "gap")
    expected = _row(score_eye_reference(*healthy), "linear", "gap")["dice_pct"]
    assert float(gap_linear["dice_pct_mean"]) == pytest.approx(expected)
