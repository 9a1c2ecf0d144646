"""Metrics against analytic fixtures with known answers."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from retina_data import metrics
from retina_data.labels import FLUID_LABEL

SPACING = (0.004, 0.012, 0.12)
"""Anisotropic OCT-like voxel size (dH, dW, dD) in mm."""


def _box(shape: tuple[int, ...], lower: tuple[int, ...], upper: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(lo, hi) for lo, hi in zip(lower, upper))] = True
    return mask


def _shift_down(labels: np.ndarray, rows: int) -> np.ndarray:
    """``labels`` moved ``rows`` deeper along the A-scan, background entering at the top."""
    shifted = np.zeros_like(labels)
    shifted[rows:] = labels[:-rows]
    return shifted


def _layered(height: int, width: int, depth: int, boundary_rows: list[int]) -> np.ndarray:
    """Flat layers ``[H, W, D]``: label ``i + 1`` starts at ``boundary_rows[i]``."""
    rows = np.arange(height)[:, None, None]
    labels = np.zeros((height, width, depth), dtype=np.uint8)
    for row in boundary_rows:
        labels += (rows >= row).astype(np.uint8)
    return labels


# --- intensity ---------------------------------------------------------------------------


def test_psnr_of_a_known_mse():
    truth = np.zeros((8, 8, 3), dtype=np.float32)
    pred = truth + 0.1  # MSE = 0.01 -> PSNR = 20 dB at data range 1
    assert metrics.mse(pred, truth) == pytest.approx(0.01, rel=1e-6)
    assert metrics.psnr(pred, truth) == pytest.approx(20.0, rel=1e-5)
    assert metrics.psnr(pred, truth, data_range=2.0) == pytest.approx(20.0 + 20 * np.log10(2.0), rel=1e-5)


def test_psnr_of_identical_images_is_infinite():
    image = np.random.default_rng(0).random((8, 8, 2))
    assert metrics.psnr(image, image) == float("inf")


def test_mae_of_a_constant_offset():
    truth = np.random.default_rng(1).random((6, 5, 4))
    assert metrics.mae(truth - 0.25, truth) == pytest.approx(0.25)


def test_ssim_of_identical_volumes_is_one():
    volume = np.random.default_rng(2).random((16, 12, 5))
    assert metrics.ssim(volume, volume) == pytest.approx(1.0)


def test_ssim_is_the_mean_over_bscans():
    rng = np.random.default_rng(3)
    truth = rng.random((16, 12, 2))
    pred = truth.copy()
    pred[:, :, 1] = rng.random((16, 12))
    second = metrics.ssim(pred[:, :, 1], truth[:, :, 1])
    assert second < 0.5
    assert metrics.ssim(pred, truth) == pytest.approx((1.0 + second) / 2)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        metrics.mse(np.zeros((2, 2)), np.zeros((2, 3)))


# --- overlap -----------------------------------------------------------------------------


def test_dice_of_two_overlapping_boxes():
    shape = (20, 20, 4)
    truth = _box(shape, (0, 0, 0), (10, 10, 4)).astype(np.uint8)  # 400 voxels
    pred = _box(shape, (5, 0, 0), (15, 10, 4)).astype(np.uint8)  # 400 voxels, 200 shared
    dice = metrics.dice_per_class(pred, truth, num_classes=2)
    assert dice[1] == pytest.approx(2 * 200 / 800)
    background = shape[0] * shape[1] * shape[2] - 400
    assert dice[0] == pytest.approx(2 * (background - 200) / (2 * background))


def test_dice_is_nan_for_a_class_absent_from_both():
    labels = np.ones((4, 4, 2), dtype=np.uint8)
    dice = metrics.dice_per_class(labels, labels, num_classes=3)
    assert np.isnan(dice[0]) and dice[1] == 1.0 and np.isnan(dice[2])


def test_dice_is_zero_for_a_class_in_one_volume_only():
    truth = np.zeros((4, 4, 2), dtype=np.uint8)
    pred = truth.copy()
    pred[0, 0, 0] = 2
    assert metrics.dice_per_class(pred, truth, num_classes=3)[2] == 0.0


def test_per_bscan_confusion_matrices_count_each_bscan():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 4, (6, 5, 3), dtype=np.uint8)
    pred = rng.integers(0, 4, (6, 5, 3), dtype=np.uint8)
    per_bscan = metrics.confusion_per_bscan(pred, truth, num_classes=4)
    assert per_bscan.shape == (3, 4, 4)
    for d in range(3):
        np.testing.assert_array_equal(per_bscan[d], metrics.confusion_matrix(pred[:, :, d], truth[:, :, d], 4))
    assert per_bscan[0, 1, 2] == np.count_nonzero((truth[:, :, 0] == 1) & (pred[:, :, 0] == 2))


def test_mean_dice_averages_present_foreground_classes():
    truth = np.zeros((10, 10, 1), dtype=np.uint8)
    truth[:5] = 1
    truth[5:] = 2
    pred = truth.copy()
    pred[:5] = 2  # class 1 missed entirely: Dice 0; class 2: 2*50/(100+50)
    assert metrics.mean_dice(pred, truth, num_classes=4) == pytest.approx((0.0 + 100 / 150) / 2)


def test_mean_dice_is_nan_without_foreground():
    labels = np.zeros((3, 3, 1), dtype=np.uint8)
    assert np.isnan(metrics.mean_dice(labels, labels, num_classes=13))


def test_out_of_range_labels_are_refused():
    labels = np.full((2, 2, 1), 13, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"expected 0..12"):
        metrics.dice_per_class(labels, labels, num_classes=13)


def test_retina_dice_counts_layers_and_fluid_as_retina():
    truth = _layered(24, 3, 2, list(range(2, 14)))  # retina = rows 2..12 (labels 1..11)
    pred = truth.copy()
    pred[pred == 5] = FLUID_LABEL  # relabelled inside the retina: the retina is unchanged
    assert metrics.retina_dice(pred, truth) == 1.0
    pred[1] = 1  # one row of vitreous called retina: 11 true rows, 12 predicted
    assert metrics.retina_dice(pred, truth) == pytest.approx(2 * 11 / 23)


def test_fluid_dice_of_known_overlap_and_absence():
    truth = np.zeros((10, 10, 2), dtype=np.uint8)
    pred = truth.copy()
    assert np.isnan(metrics.fluid_dice(pred, truth))
    truth[2:6, 2:6] = FLUID_LABEL  # 32 voxels
    pred[4:8, 2:6] = FLUID_LABEL  # 32 voxels, 16 shared
    assert metrics.fluid_dice(pred, truth) == pytest.approx(0.5)


# --- surface distances -------------------------------------------------------------------


@pytest.mark.parametrize(("axis", "shift"), [(0, 3), (1, 2), (2, 4)])
def test_surface_distance_of_parallel_sheets_is_shift_times_spacing(axis, shift):
    shape = (12, 10, 9)
    truth = np.zeros(shape, dtype=np.uint8)
    pred = np.zeros(shape, dtype=np.uint8)
    np.moveaxis(truth, axis, 0)[2] = 1
    np.moveaxis(pred, axis, 0)[2 + shift] = 1
    result = metrics.surface_distances(pred, truth, SPACING, classes=[1])
    assert result["assd"][0] == pytest.approx(shift * SPACING[axis], rel=1e-6)
    assert result["hd95"][0] == pytest.approx(shift * SPACING[axis], rel=1e-6)


def test_surface_distance_of_concentric_spheres_is_the_radius_difference():
    spacing = (0.5, 1.0, 2.0)
    shape = (64, 32, 16)
    centre = (np.array(shape) - 1) / 2 * np.array(spacing)
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
    radius_mm = np.linalg.norm(grid - centre, axis=-1)
    truth = (radius_mm <= 12.0).astype(np.uint8)
    pred = (radius_mm <= 8.0).astype(np.uint8)
    result = metrics.surface_distances(pred, truth, spacing, classes=[1])
    assert result["assd"][0] == pytest.approx(4.0, abs=max(spacing) / 2)
    assert result["hd95"][0] == pytest.approx(4.0, abs=max(spacing))
    assert result["hd95"][0] >= result["assd"][0]


def test_surface_distance_is_nan_for_a_class_missing_in_one_volume():
    truth = np.zeros((8, 8, 4), dtype=np.uint8)
    truth[2:5, 2:5, 1:3] = 1
    result = metrics.surface_distances(np.zeros_like(truth), truth, SPACING, classes=[1, 2])
    assert np.isnan(result["assd"]).all() and np.isnan(result["hd95"]).all()


def test_boundary_error_of_a_shifted_label_volume_is_shift_times_dh():
    truth = _layered(40, 5, 3, list(range(6, 30, 2)))
    pred = _shift_down(truth, 3)  # every boundary 3 rows deeper
    result = metrics.boundary_surface_errors(pred, truth, SPACING)
    np.testing.assert_allclose(result["assd"], 3 * SPACING[0])
    np.testing.assert_allclose(result["hd95"], 3 * SPACING[0])


def test_boundary_error_hd95_is_the_95th_percentile_over_ascans():
    truth = _layered(40, 20, 5, list(range(6, 30, 2)))  # 100 A-scans
    pred = truth.copy()
    pred[:, :4, :] = _shift_down(truth[:, :4, :], 5)  # 20 A-scans 5 rows off, 80 exact
    result = metrics.boundary_surface_errors(pred, truth, SPACING)
    np.testing.assert_allclose(result["assd"], 0.2 * 5 * SPACING[0])
    np.testing.assert_allclose(result["hd95"], 5 * SPACING[0])


def test_boundary_depth_is_the_first_row_with_a_deeper_label():
    labels = np.random.default_rng(5).integers(0, 13, (20, 4, 3), dtype=np.uint8)  # not ordered by depth
    depths = metrics.boundary_depths(labels)
    for boundary in range(12):
        deeper = labels > boundary
        expected = np.where(deeper.any(axis=0), np.argmax(deeper, axis=0), 20)
        np.testing.assert_array_equal(depths[boundary], expected)


def test_fluid_does_not_move_the_boundaries_below_it():
    truth = _layered(40, 4, 2, list(range(6, 30, 2)))
    pred = truth.copy()
    pred[17:19] = FLUID_LABEL  # fluid replaces layer 6 (rows 16..17 are class 6)
    np.testing.assert_array_equal(metrics.boundary_depths(pred)[7:], metrics.boundary_depths(truth)[7:])


def test_boundary_missing_from_the_truth_is_nan_and_from_the_prediction_is_penalised():
    truth = _layered(30, 2, 2, [5, 10])  # only boundaries 0 and 1 exist
    pred = _layered(30, 2, 2, [5])
    result = metrics.boundary_surface_errors(pred, truth, SPACING)
    assert result["assd"][0] == 0.0
    assert result["assd"][1] == pytest.approx((30 - 10) * SPACING[0])
    assert np.isnan(result["assd"][2:]).all()


def test_ilm_assd_measures_boundary_zero():
    truth = _layered(30, 3, 2, [5, 10, 15])
    pred = _layered(30, 3, 2, [7, 10, 15])
    assert metrics.ilm_assd(pred, truth, SPACING) == pytest.approx(2 * SPACING[0])


# --- LPIPS -------------------------------------------------------------------------------


def test_lpips_is_none_when_the_package_is_missing(monkeypatch):
    metrics._lpips_model.cache_clear()
    monkeypatch.setitem(sys.modules, "lpips", None)  # makes `import lpips` fail
    volume = np.zeros((16, 16, 2), dtype=np.float32)
    try:
        assert metrics.lpips_available() is False
        assert metrics.lpips_distance(volume, volume) is None
    finally:
        metrics._lpips_model.cache_clear()
