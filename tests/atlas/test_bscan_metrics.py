"""The paper's 2-D per-B-scan metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atlas_registration.bscan_metrics import (
    assd_per_bscan,
    block_mean,
    dice_per_bscan,
    reference_metrics,
    ssim_per_bscan,
)


def two_class_bscan(top_rows: int) -> np.ndarray:
    """A 4 x 4 B-scan ``[4, 4, 1]``: class 1 in the first ``top_rows`` rows, class 2 below (0 and 3 absent)."""
    labels = np.full((4, 4, 1), 2, dtype=np.uint8)
    labels[:top_rows] = 1
    return labels


def test_a_class_absent_from_both_bscans_counts_one() -> None:
    dice = dice_per_bscan(two_class_bscan(3), two_class_bscan(2), num_classes=4)
    # class 1: 12 predicted, 8 true, 8 shared; class 2: 4 predicted, 8 true, 4 shared
    np.testing.assert_allclose(dice[0], [1.0, 2 * 8 / 20, 2 * 4 / 12, 1.0])


def test_dice_mean_is_over_classes_one_to_nine_with_absent_ones_as_one() -> None:
    row = reference_metrics(two_class_bscan(3), two_class_bscan(2), 4, (1.0, 1.0))
    assert row["dice_mean"] == pytest.approx((0.8 + 2 / 3 + 1.0) / 3)  # the NaN-skipping mean gives 0.733
    assert row["dice_0"] == 1.0 and row["dice_3"] == 1.0


def square_labels(top: int) -> np.ndarray:
    """A 12 x 12 B-scan of class 1: a 3 x 3 square with its top row at ``top``, columns 4..6."""
    labels = np.zeros((12, 12, 1), dtype=np.uint8)
    labels[top : top + 3, 4:7] = 1
    return labels


def test_surface_distance_of_a_square_shifted_by_one_row() -> None:
    """Edges: the 8 border pixels of each square. Spacing (dH, dW) = (2, 1) mm.

    Shifted down by one row, 4 of the 8 edge pixels of each square lie on the other's edge
    (distance 0), 3 are one row (2 mm) from it and the centre-row pixel is one column (1 mm)
    from it: 7 mm over 8 pixels each way, symmetric mean 14 / 16 = 0.875 mm.
    """
    assd = assd_per_bscan(square_labels(5), square_labels(4), num_classes=2, spacing_hw_mm=(2.0, 1.0))
    assert assd.shape == (1, 1)
    assert assd[0, 0] == pytest.approx(0.875)
    row = reference_metrics(square_labels(5), square_labels(4), 2, (2.0, 1.0))
    assert row["assd_um"] == pytest.approx(875.0)


def test_classes_absent_from_a_bscan_are_left_out_of_the_surface_distance() -> None:
    pred = np.concatenate([square_labels(5), np.zeros((12, 12, 1), np.uint8)], axis=2)
    truth = np.concatenate([square_labels(4), np.zeros((12, 12, 1), np.uint8)], axis=2)
    assd = assd_per_bscan(pred, truth, 2, (2.0, 1.0))
    assert math.isnan(assd[1, 0])
    only_predicted = square_labels(5).copy()
    assert math.isinf(assd_per_bscan(only_predicted, np.zeros_like(only_predicted), 2, (1.0, 1.0))[0, 0])
    assert reference_metrics(pred, truth, 2, (2.0, 1.0))["assd_um"] == pytest.approx(875.0)


def test_ssim_of_two_constant_bscans() -> None:
    """Constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 1)^2."""
    a = np.full((16, 16, 2), 0.5, dtype=np.float32)
    b = np.full((16, 16, 2), 0.25, dtype=np.float32)
    c1 = 1e-4
    np.testing.assert_allclose(ssim_per_bscan(a, b), (2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1), rtol=1e-5)
    np.testing.assert_allclose(ssim_per_bscan(a, a), 1.0, rtol=1e-6)
    assert np.isnan(ssim_per_bscan(a[:, :8], b[:, :8])).all()  # narrower than the 11 x 11 window


def test_block_mean_averages_the_blocks_not_the_bscans() -> None:
    values = np.array([1.0] * 8 + [0.0] * 2)
    assert block_mean(values, 8) == pytest.approx(0.5)  # the B-scan mean would be 0.8
    assert block_mean(values, 1) == pytest.approx(0.8)
    assert block_mean(np.array([np.nan, 1.0, 3.0]), 8) == pytest.approx(2.0)


@pytest.mark.filterwarnings("ignore:the (prediction|ground truth) of class")
def test_surface_distance_equals_monai_on_layered_bscans() -> None:
    """The vectorised ASSD is MONAI's ``compute_average_surface_distance`` B-scan by B-scan: wavy
    layers that touch the image border, a class present in one volume only (inf) and a class
    absent from both (NaN), anisotropic spacing."""
    import torch
    from monai.metrics import compute_average_surface_distance

    rng = np.random.default_rng(3)
    h, w, d, classes = 20, 14, 5, 5
    rows = np.arange(h)[:, None, None]
    boundaries = 5 + 3 * np.sin(np.arange(w)[None, :, None] / 3 + rng.random((1, 1, d)) * 6)
    truth = np.clip((rows > boundaries).astype(np.uint8) + (rows > boundaries + 6), 0, 2)
    pred = np.clip(
        (rows > boundaries + rng.integers(-1, 2, (1, w, d))).astype(np.uint8) + (rows > boundaries + 5), 0, 2
    )
    pred[2:4, 3:5, 1] = 3  # class 3 predicted in B-scan 1 only; class 4 nowhere
    spacing = (0.004, 0.012)
    ours = assd_per_bscan(pred, truth, classes, spacing)

    def one_hot(labels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.moveaxis(labels, 2, 0).astype(np.int64))[:, None] == torch.arange(classes).reshape(
            1, -1, 1, 1
        )

    monai = compute_average_surface_distance(
        one_hot(pred), one_hot(truth), include_background=False, symmetric=True, spacing=list(spacing)
    ).numpy()
    assert np.isinf(ours[1, 2]) and np.isnan(ours[0, 3])
    np.testing.assert_allclose(ours, monai, rtol=1e-5, equal_nan=True)
