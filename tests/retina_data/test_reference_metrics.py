"""The paper's metric set: each definition against a hand-computed answer."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from retina_data import reference_metrics as rm


def test_the_eight_class_remap_merges_layers_and_drops_choroid_and_fluid() -> None:
    labels = np.arange(14, dtype=np.uint8)
    assert rm.remap_reference_classes(labels).tolist() == [0, 1, 2, 2, 3, 4, 5, 6, 6, 7, 7, 8, 0, 0]


def test_psnr_uses_the_data_range_of_each_ground_truth_bscan() -> None:
    truth = np.zeros((8, 8, 2))
    truth[:4, :, 0] = 0.5  # range 0.5
    truth[:4, :, 1] = 1.0  # range 1.0
    scores = rm.intensity_metrics_per_bscan(truth + 0.05, truth)
    assert rm.bscan_data_range(truth).tolist() == [0.5, 1.0]
    assert scores["mse"] == pytest.approx([0.0025, 0.0025])
    assert scores["mae"] == pytest.approx([0.05, 0.05])
    # 10 log10(0.5^2 / 0.0025) = 20 dB; with the range 1 it would be 26.02 dB
    assert scores["psnr"] == pytest.approx([20.0, 10 * np.log10(400.0)])


def test_ssim_is_scikit_image_defaults_with_the_bscan_data_range() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((16, 16, 1)) * 0.4
    pred = truth + rng.normal(0, 0.02, truth.shape)
    scores = rm.intensity_metrics_per_bscan(pred, truth)
    span = truth.max() - truth.min()
    expected = structural_similarity(truth[:, :, 0], pred[:, :, 0], data_range=span)
    assert scores["ssim"][0] == pytest.approx(expected)
    assert scores["ssim"][0] != pytest.approx(structural_similarity(truth[:, :, 0], pred[:, :, 0], data_range=1.0))


def test_exact_bscans_give_infinite_psnr_and_constant_truth_gives_nan() -> None:
    truth = np.zeros((8, 8, 2))
    truth[0, 0, 0] = 1.0
    scores = rm.intensity_metrics_per_bscan(truth, truth)
    assert scores["psnr"][0] == np.inf and np.isnan(scores["psnr"][1]) and np.isnan(scores["ssim"][1])


def test_smooth_dice_on_a_hand_example() -> None:
    assert rm.smooth_dice(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert rm.smooth_dice(np.zeros(4), np.zeros(4)) == 1.0
    assert rm.smooth_dice(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1e-12 / 2)


def test_dice_averages_labels_one_to_the_truth_maximum_with_absent_labels_counting_one() -> None:
    truth = np.array([[0, 1], [3, 3]], dtype=np.uint8)[:, :, None]
    pred = np.array([[0, 1], [3, 0]], dtype=np.uint8)[:, :, None]
    # label 1: 1.0; label 2 absent from both: 1.0; label 3: 2*1 / (1 + 2) = 2/3
    assert rm.dice_per_bscan(pred, truth)[0] == pytest.approx((1 + 1 + 2 / 3) / 3)


def test_upper_border_takes_the_first_row_per_ascan_and_drops_row_zero() -> None:
    mask = np.zeros((5, 3), dtype=bool)
    mask[0:, 0] = True  # starts on row 0: dropped
    mask[2:4, 1] = True
    border = rm.upper_border(mask)
    assert np.argwhere(border).tolist() == [[2, 1]]


def _layer(height: int, width: int, rows: list[int]) -> np.ndarray:
    labels = np.zeros((height, width), dtype=np.uint8)
    for column, row in enumerate(rows):
        labels[row:, column] = 1
    return labels[:, :, None]


def test_border_distances_apply_the_ascan_spacing_to_depth_when_swapped() -> None:
    truth = _layer(10, 4, [2, 2, 2, 2])
    pred = _layer(10, 4, [4, 4, 4, 4])
    spacing_hw = (0.01, 0.1)  # (depth, A-scan) mm
    swapped = rm.border_metrics_per_bscan(pred, truth, spacing_hw, "swapped")
    correct = rm.border_metrics_per_bscan(pred, truth, spacing_hw, "correct")
    assert swapped["assd"][0] == pytest.approx(0.2) and swapped["hd"][0] == pytest.approx(0.2)
    assert correct["assd"][0] == pytest.approx(0.02)


def test_border_distances_are_pooled_over_both_directions() -> None:
    truth = _layer(10, 2, [2, 2])
    pred = _layer(10, 2, [2, 5])
    # unit sampling: pred -> truth [0, 3]; truth -> pred [0, 1] (truth pixel (2, 1) is 1 from pred (2, 0))
    scores = rm.border_metrics_per_bscan(pred, truth, (1.0, 1.0), "correct")
    distances = np.array([0.0, 3.0, 0.0, 1.0])
    assert scores["assd"][0] == pytest.approx(distances.mean())
    assert scores["hd95"][0] == pytest.approx(np.percentile(distances, 95))
    assert scores["hd"][0] == pytest.approx(3.0)


def test_border_metrics_skip_labels_missing_from_the_prediction() -> None:
    truth = _layer(10, 3, [2, 2, 2])
    assert np.isnan(rm.border_metrics_per_bscan(np.zeros_like(truth), truth, (1.0, 1.0))["assd"][0])


def test_fluid_metrics_are_nan_on_bscans_without_fluid_and_score_the_ilm() -> None:
    truth = np.zeros((10, 4, 2), dtype=np.uint8)
    truth[3:, :, :] = 1
    truth[6:8, 1:3, 0] = 2  # fluid in B-scan 0 only
    pred = truth.copy()
    pred[3, :, 1] = 0  # ILM one row lower in B-scan 1
    scores = rm.fluid_metrics_per_bscan(pred, truth, (1.0, 1.0), "correct")
    assert scores["fluid_dice"][0] == pytest.approx(1.0) and np.isnan(scores["fluid_dice"][1])
    assert scores["ilm_assd"].tolist() == pytest.approx([0.0, 1.0])
    assert scores["retina_dice"][1] == pytest.approx(2 * 24 / (24 + 28))


def test_cscr_labels_from_layers_and_fluid() -> None:
    assert rm.cscr_labels(np.array([0, 1, 5, 11, 12, 13])).tolist() == [0, 1, 1, 1, 0, 2]


def test_border_distances_equal_those_of_the_euclidean_distance_transform() -> None:
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(3)
    truth = _layer(40, 30, list(rng.integers(1, 35, 30)))[:, :, 0] == 1
    pred = _layer(40, 30, list(rng.integers(1, 35, 30)))[:, :, 0] == 1
    sampling = (0.0039, 0.0117)
    a, b = rm.upper_border(pred), rm.upper_border(truth)
    expected = np.concatenate(
        [distance_transform_edt(~b, sampling=sampling)[a], distance_transform_edt(~a, sampling=sampling)[b]]
    )
    assert np.allclose(np.sort(rm.border_distances(a, b, sampling)), np.sort(expected))
