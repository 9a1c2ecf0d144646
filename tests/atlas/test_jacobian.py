"""Jacobian determinant of x + u(x) against analytic deformations (anisotropic mm spacing)."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_registration.jacobian import jacobian_determinant, negative_fraction, nonpositive_fraction

SHAPE = (12, 10, 8)
SPACING = (0.004, 0.012, 0.1)


def positions_mm() -> np.ndarray:
    """``x [3, H, W, D]``: the mm position of every voxel."""
    grid = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    return np.stack(grid).astype(np.float64) * np.asarray(SPACING).reshape(3, 1, 1, 1)


def test_identity_has_determinant_one() -> None:
    det = jacobian_determinant(np.zeros((3, *SHAPE)), SPACING)
    np.testing.assert_allclose(det, 1.0)


@pytest.mark.parametrize("scale", [0.5, 1.3, 2.0])
def test_uniform_scaling_by_s_gives_s_cubed(scale: float) -> None:
    det = jacobian_determinant((scale - 1.0) * positions_mm(), SPACING)
    np.testing.assert_allclose(det, scale**3)


@pytest.mark.parametrize(("component", "along"), [(1, 0), (0, 2), (2, 1)])
def test_a_linear_shear_keeps_volume(component: int, along: int) -> None:
    displacement = np.zeros((3, *SHAPE))
    displacement[component] = 3.0 * positions_mm()[along]
    np.testing.assert_allclose(jacobian_determinant(displacement, SPACING), 1.0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_stretch_along_one_axis_gives_one_plus_a(axis: int) -> None:
    displacement = np.zeros((3, *SHAPE))
    displacement[axis] = 0.25 * positions_mm()[axis]
    np.testing.assert_allclose(jacobian_determinant(displacement, SPACING), 1.25)


def test_folding_wave_is_negative_exactly_where_its_slope_is_below_minus_one() -> None:
    depth_mm = positions_mm()[0]
    wavenumber = 2 * np.pi / (SHAPE[0] * SPACING[0])
    amplitude = 2.0 / wavenumber  # slope amplitude 2: folds where cos(k x) < -1/2
    displacement = np.zeros((3, *SHAPE))
    displacement[0] = amplitude * np.sin(wavenumber * depth_mm)
    det = jacobian_determinant(displacement, SPACING)
    expected = 1.0 + 2.0 * np.cos(wavenumber * depth_mm)
    clear = np.abs(expected) > 0.5
    clear[[0, -1]] = False  # one-sided differences at the border
    np.testing.assert_array_equal((det <= 0)[clear], (expected <= 0)[clear])
    assert (det <= 0).any()


def test_chunks_give_the_same_result_as_one_pass() -> None:
    rng = np.random.default_rng(0)
    displacement = rng.normal(scale=0.01, size=(3, *SHAPE))
    whole = jacobian_determinant(displacement, SPACING, chunk_size=SHAPE[2])
    np.testing.assert_array_equal(jacobian_determinant(displacement, SPACING, chunk_size=1), whole)
    np.testing.assert_array_equal(jacobian_determinant(displacement, SPACING, chunk_size=3), whole)


def test_nonpositive_fraction_counts_zero_and_negative() -> None:
    det = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    assert nonpositive_fraction(det) == pytest.approx(0.4)


def test_nonpositive_fraction_inside_a_mask() -> None:
    det = np.array([-1.0, 0.0, 0.5, 1.0])
    assert nonpositive_fraction(det, mask=np.array([True, False, True, True])) == pytest.approx(1 / 3)


def test_negative_fraction_leaves_out_zero_determinants() -> None:
    det = np.array([1.0, 0.0, -0.5, 2.0, -1e-9])
    assert negative_fraction(det) == pytest.approx(0.4)
    assert nonpositive_fraction(det) == pytest.approx(0.6)


def test_a_fold_that_the_doubled_identity_hides_is_counted() -> None:
    """u = -1.5 x along H: det(I + grad u) = -0.5 (folded); the reference's det(2I + grad u) = 0.5 * 2 * 2."""
    spacing = (0.1, 0.2, 0.3)
    shape = (6, 5, 4)
    rows = np.arange(shape[0])[:, None, None] * spacing[0] * np.ones(shape)
    displacement = np.zeros((3, *shape))
    displacement[0] = -1.5 * rows
    det = jacobian_determinant(displacement, spacing)
    np.testing.assert_allclose(det, -0.5)
    assert negative_fraction(det) == 1.0
    positions = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"))
    doubled = jacobian_determinant(displacement + positions, spacing)  # det(I + grad(u + x)) = det(2I + grad u)
    np.testing.assert_allclose(doubled, 2.0)
    assert negative_fraction(doubled) == 0.0
