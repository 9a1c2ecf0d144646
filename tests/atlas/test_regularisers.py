"""Autograd regularisers against linear displacements with known Jacobians."""

from __future__ import annotations

import pytest
import torch

from atlas_registration.regularisers import displacement_jacobian, gradient_penalty, jacobian_penalty

MATRIX = torch.tensor([[0.1, 0.2, 0.0], [0.0, -0.3, 0.05], [0.4, 0.0, 0.2]])


def _linear(coords: torch.Tensor) -> torch.Tensor:
    return coords @ MATRIX.T + torch.tensor([0.5, -0.2, 0.1])


def test_jacobian_of_linear_displacement_is_its_matrix():
    grad = displacement_jacobian(_linear, torch.rand(2, 7, 3))
    torch.testing.assert_close(grad, MATRIX.expand(2, 7, 3, 3))


def test_jacobian_penalty_is_distance_of_determinant_from_one():
    grad = displacement_jacobian(_linear, torch.rand(1, 5, 3))
    expected = abs(1.0 - float(torch.linalg.det(torch.eye(3) + MATRIX)))
    assert float(jacobian_penalty(grad)) == pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_is_squared_frobenius_norm():
    grad = displacement_jacobian(_linear, torch.rand(1, 5, 3))
    assert float(gradient_penalty(grad)) == pytest.approx(float(MATRIX.pow(2).sum()), rel=1e-5)


def test_translation_costs_nothing():
    grad = displacement_jacobian(lambda x: x * 0 + torch.tensor([0.3, 0.1, -0.2]), torch.rand(1, 9, 3))
    assert float(jacobian_penalty(grad)) == pytest.approx(0.0, abs=1e-6)
    assert float(gradient_penalty(grad)) == pytest.approx(0.0, abs=1e-6)


def test_jacobian_penalty_of_bf16_derivatives_is_computed_in_fp32():
    """Under bf16 autocast the derivatives arrive in bf16; ``1 + du/dx`` must not be rounded to bf16."""
    grad = (0.01 * MATRIX).expand(1, 4, 3, 3).bfloat16()
    expected = abs(1.0 - float(torch.linalg.det(torch.eye(3) + grad[0, 0].float())))
    assert float(jacobian_penalty(grad)) == pytest.approx(expected, rel=1e-4)
