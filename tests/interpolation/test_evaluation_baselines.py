"""Classical slow-axis baselines: exact on linear data, exact at the input B-scans."""

from __future__ import annotations

import numpy as np
import pytest

from anisotropic_interpolation.baselines import METHODS, classical_baselines, interpolate_slow_axis, nearest_index
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.phantom import PhantomConfig, make_eye

SPARSE_POSITIONS = np.array([0.0, 0.3, 1.0, 1.2, 2.0])
"""Non-uniform acquired B-scan positions (mm)."""


def _linear_eye(positions: np.ndarray) -> Eye:
    """Intensities ``a(h, w) + b(h, w) * z``: linear along the slow axis."""
    rng = np.random.default_rng(0)
    offset = rng.random((9, 7, 1))
    slope = rng.random((9, 7, 1)) - 0.5
    return Eye(
        oct=(offset + slope * positions).astype(np.float32),
        spacing=(0.004, 0.012, 0.3),
        subject="lin",
        bscan_positions=positions,
    )


def _slab_labels(values: list[int]) -> np.ndarray:
    """Labels ``[3, 2, N]`` holding ``values[k]`` everywhere in B-scan ``k``."""
    return np.broadcast_to(np.asarray(values, dtype=np.uint8), (3, 2, len(values))).copy()


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_linear_and_cubic_are_exact_on_data_linear_along_the_slow_axis(method):
    queries = np.linspace(0.0, 2.0, 17)
    sparse = _linear_eye(SPARSE_POSITIONS)
    expected = _linear_eye(queries).oct
    predicted = interpolate_slow_axis(sparse, queries, method).intensity
    np.testing.assert_allclose(predicted, expected, atol=1e-6)


def test_nearest_takes_the_closest_acquired_bscan_at_non_uniform_positions():
    queries = np.array([0.1, 0.2, 0.7, 1.05, 1.5, 1.7])
    sparse = _linear_eye(SPARSE_POSITIONS)
    predicted = interpolate_slow_axis(sparse, queries, "nearest").intensity
    np.testing.assert_array_equal(predicted, sparse.oct[:, :, [0, 1, 2, 2, 3, 4]])


def test_nearest_index_breaks_ties_towards_the_lower_bscan():
    np.testing.assert_array_equal(nearest_index(np.array([0.0, 1.0, 3.0]), np.array([0.5, 2.0, 2.1])), [0, 1, 2])


@pytest.mark.parametrize("method", METHODS)
def test_positions_outside_the_acquired_range_take_the_edge_bscan(method):
    sparse = _linear_eye(SPARSE_POSITIONS)
    predicted = interpolate_slow_axis(sparse, np.array([-0.5, 2.7]), method).intensity
    np.testing.assert_array_equal(predicted[:, :, 0], sparse.oct[:, :, 0])
    np.testing.assert_array_equal(predicted[:, :, 1], sparse.oct[:, :, -1])


def test_every_baseline_reproduces_its_input_bscans_exactly():
    dense = make_eye(PhantomConfig(n_subjects=1, shape=(48, 40, 16)), 0, "OD")
    sparse = dense.subsample(3, offset=1)
    for method, prediction in classical_baselines(sparse, dense.bscan_positions).items():
        np.testing.assert_array_equal(prediction.intensity[:, :, 1::3], sparse.oct, err_msg=method)
        np.testing.assert_array_equal(prediction.labels[:, :, 1::3], sparse.labels, err_msg=method)


def test_interpolated_labels_follow_the_nearer_bscan():
    sparse = Eye(
        oct=np.zeros((3, 2, 2), np.float32),
        labels=_slab_labels([2, 5]),
        spacing=(1, 1, 1),
        subject="lab",
        bscan_positions=np.array([0.0, 1.0]),
    )
    queries = np.array([0.2, 0.8])
    for method in METHODS:
        labels = interpolate_slow_axis(sparse, queries, method).labels
        np.testing.assert_array_equal(labels[0, 0], [2, 5], err_msg=method)


def test_cubic_labels_use_the_one_hot_spline_of_four_bscans():
    # Class 1 at z = 0, 1, 2, 3 has one-hot (1, 0, 0, 1), whose not-a-knot cubic is
    # 0.5 (z - 1.5)^2 - 0.125: 0.48 at z = 0.4, below class 0's 0.52, so cubic says 0
    # where the nearest B-scan (z = 0) says 1.
    sparse = Eye(
        oct=np.zeros((3, 2, 4), np.float32),
        labels=_slab_labels([1, 0, 0, 1]),
        spacing=(1, 1, 1),
        subject="lab",
        bscan_positions=np.arange(4.0),
    )
    queries = np.array([0.4, 1.5])
    np.testing.assert_array_equal(interpolate_slow_axis(sparse, queries, "cubic").labels[0, 0], [0, 0])
    np.testing.assert_array_equal(interpolate_slow_axis(sparse, queries, "nearest").labels[0, 0], [1, 0])


def test_a_single_acquired_bscan_is_repeated():
    sparse = _linear_eye(np.array([0.5]))
    for method in METHODS:
        predicted = interpolate_slow_axis(sparse, np.array([0.0, 0.5, 1.0]), method).intensity
        np.testing.assert_array_equal(predicted, np.repeat(sparse.oct, 3, axis=2))


def test_unknown_method_is_refused():
    with pytest.raises(DataError, match="spline"):
        interpolate_slow_axis(_linear_eye(SPARSE_POSITIONS), np.array([0.5]), "spline")
