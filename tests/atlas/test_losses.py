"""The registration loss of the reference: MSE + BCE of the softmax + 0.01 mean |u|, on known values."""

from __future__ import annotations

import math

import pytest
import torch

from atlas_registration.losses import LossWeights, displacement_l1, label_loss, registration_loss


class ConstantAtlas(torch.nn.Module):
    """Intensity 0.5 and logits (0, 0) everywhere: a softmax of (0.5, 0.5)."""

    def forward(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.full(coords.shape[:-1], 0.5), torch.zeros(*coords.shape[:-1], 2)


def test_l1_term_is_the_mean_absolute_displacement() -> None:
    u = torch.tensor([[[0.1, -0.2, 0.3], [0.0, 0.4, -0.6]]])  # [B=1, N=2, 3]
    assert float(displacement_l1(u)) == pytest.approx(1.6 / 6)


def test_reference_loss_on_a_known_displacement() -> None:
    batch = {
        "coords": torch.zeros(1, 2, 1, 1, 3),
        "intensity": torch.tensor([0.5, 1.0]).reshape(1, 2, 1, 1),
        "labels": torch.tensor([0, 1]).reshape(1, 2, 1, 1),
    }
    u = torch.tensor([0.02, -0.04, 0.06])
    terms = registration_loss(ConstantAtlas(), u.expand_as, batch, LossWeights(seg=1.0))
    mse = (0.0**2 + 0.5**2) / 2
    bce = -math.log(0.5)  # every one-hot entry is predicted as 0.5
    l1 = 0.04
    assert float(terms["mse"]) == pytest.approx(mse)
    assert float(terms["bce"]) == pytest.approx(bce)
    assert float(terms["reg"]) == pytest.approx(l1)
    assert float(terms["loss"]) == pytest.approx(mse + bce + 0.01 * l1)


def test_bce_of_the_softmax_against_one_hot_labels() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([0, 2])
    p = torch.softmax(logits, -1)
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    expected = -(one_hot * p.log() + (1 - one_hot) * (1 - p).log()).mean()
    torch.testing.assert_close(label_loss(logits, labels, "bce"), expected)
    torch.testing.assert_close(label_loss(logits, labels, "ce"), torch.nn.functional.cross_entropy(logits, labels))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(
            label_loss(logits.bfloat16(), labels, "bce"), label_loss(logits.bfloat16().float(), labels, "bce")
        )
