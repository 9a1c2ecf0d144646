"""Training losses against hand computations: whole-B-scan SSIM and Combi, softmax BCE, the code penalty."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from anisotropic_interpolation.config import ExperimentConfig
from anisotropic_interpolation.losses import code_penalty, reconstruction_loss, segmentation_loss, ssim_per_image


def _gaussian_ssim_zero_padded(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM written out: 11 x 11 Gaussian (sigma 1.5), zero padding, C1 = 0.01², C2 = 0.03², map mean."""
    axis = np.arange(11) - 5.0
    profile = np.exp(-(axis**2) / (2 * 1.5**2))
    window = np.outer(profile, profile) / np.outer(profile, profile).sum()

    def mean(image: np.ndarray) -> np.ndarray:
        return ndimage.correlate(image, window, mode="constant", cval=0.0)

    mu_x, mu_y = mean(x), mean(y)
    var_x, var_y, cov = mean(x * x) - mu_x**2, mean(y * y) - mu_y**2, mean(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim.mean())


@pytest.fixture
def bscan_pair() -> tuple[np.ndarray, np.ndarray]:
    """A smooth 20 x 24 'B-scan' and a noisy copy (float64)."""
    rng = np.random.default_rng(0)
    truth = ndimage.gaussian_filter(rng.random((20, 24)), 2.0)
    return truth, np.clip(truth + 0.1 * rng.standard_normal(truth.shape), 0.0, 1.0)


def test_whole_bscan_ssim_is_the_zero_padded_11x11_gaussian_ssim(bscan_pair) -> None:
    truth, prediction = bscan_pair
    expected = _gaussian_ssim_zero_padded(prediction, truth)
    ours = ssim_per_image(torch.tensor(prediction[None]), torch.tensor(truth[None]), "gaussian11_zero_padded")
    assert float(ours[0]) == pytest.approx(expected, rel=1e-5)
    valid = ssim_per_image(torch.tensor(prediction[None]), torch.tensor(truth[None]), "gaussian7_valid")
    assert abs(float(valid[0]) - expected) > 1e-3  # the option is another window, not the same number


def test_combi_is_mse_plus_a_tenth_of_one_minus_ssim_and_ssim_is_one_minus_ssim(bscan_pair) -> None:
    truth, prediction = bscan_pair
    mse = float(np.mean((prediction - truth) ** 2))
    dissimilarity = 1.0 - _gaussian_ssim_zero_padded(prediction, truth)
    p, t = torch.tensor(prediction[None]), torch.tensor(truth[None])
    combi = ExperimentConfig().TRAINING  # the defaults are the reference's
    assert float(reconstruction_loss(p, t, "Combi", combi.SSIM_WEIGHT, combi.SSIM_WINDOW)[0]) == pytest.approx(
        mse + 0.1 * dissimilarity, rel=1e-5
    )
    assert float(reconstruction_loss(p, t, "SSIM")[0]) == pytest.approx(dissimilarity, rel=1e-5)
    assert float(reconstruction_loss(p, t, "MSE")[0]) == pytest.approx(mse, rel=1e-6)


def test_softmax_bce_is_the_binary_cross_entropy_of_the_softmax_against_one_hot_labels() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = np.array([0, 1])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    one_hot = np.eye(3)[labels]
    expected = -(one_hot * np.log(p) + (1 - one_hot) * np.log(1 - p)).mean(1)
    ours = segmentation_loss(torch.tensor(logits), torch.tensor(labels), "softmax_BCE")
    assert np.allclose(ours.numpy(), expected, rtol=1e-6)
    assert float(segmentation_loss(torch.zeros(1, 2), torch.tensor([1]), "softmax_BCE")[0]) == pytest.approx(np.log(2))
    cross_entropy = segmentation_loss(torch.tensor(logits), torch.tensor(labels), "CE")
    assert np.allclose(cross_entropy.numpy(), -np.log(p[[0, 1], labels]), rtol=1e-6)


def test_code_penalty_is_the_mean_square_of_the_current_eyes_code() -> None:
    codes = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert code_penalty(codes, torch.tensor([1]), "eye_mean_square").tolist() == [12.5]
    assert code_penalty(codes, torch.tensor([0, 1]), "all_codes_squared_norm").tolist() == [15.0, 15.0]


def test_the_default_losses_and_schedule_are_the_references() -> None:
    train, test = ExperimentConfig().TRAINING, ExperimentConfig().TEST
    assert (train.SSIM_WEIGHT, train.SSIM_WINDOW, train.LOSS_SEG) == (0.1, "gaussian11_zero_padded", "softmax_BCE")
    assert (train.LATENT_CODE.weight(False), train.LATENT_CODE.weight(True), train.LATENT_CODE.REG_TYPE) == (
        1.0,
        0.0,
        "eye_mean_square",
    )
    assert (train.SAMPLING, train.LR_SCHEDULE, train.LR_GAMMA) == ("bscan", "exponential", 0.99)
    assert (train.EARLY_STOPPING_PATIENCE, train.EARLY_STOPPING_MIN_DELTA, train.EARLY_STOPPING_START_EPOCH) == (
        10,
        5e-4,
        100,
    )
    assert (test.SAMPLING, test.LR_SCHEDULE, test.LR_GAMMA, test.KEEP, test.CONVERGENCE_TOL) == (
        "bscan",
        "exponential",
        0.99,
        "best",
        0.0,
    )
