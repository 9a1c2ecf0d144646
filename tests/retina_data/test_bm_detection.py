"""Bruch's membrane found in the image: against the phantom's known BM, and flattening at import."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from retina_data.bm_detection import detect_bm_rows
from retina_data.errors import DataError
from retina_data.phantom import PhantomConfig, make_scanned_eye
from retina_data.preprocessing import bm_rows_from_labels, flatten_imported

PHANTOM = PhantomConfig(n_subjects=2, shape=(128, 64, 12), seed=5)


@pytest.mark.parametrize(("subject", "laterality"), [(0, "OD"), (1, "OS")])
def test_the_bm_of_an_unflattened_phantom_eye_is_found_within_a_row(subject, laterality):
    eye, truth = make_scanned_eye(PHANTOM, subject, laterality)
    assert np.ptp(truth) > 10  # tilt and curvature: a flat guess would be far off
    error = np.abs(detect_bm_rows(eye.oct, eye.spacing) - truth)
    assert error.mean() < 0.7 and np.percentile(error, 95) < 1.5  # rows of 7 um


def test_a_large_vessel_above_its_shadow_does_not_pull_the_surface_up():
    eye, truth = make_scanned_eye(PHANTOM, 0, "OD")
    shadowed = eye.oct.copy()
    for w in range(20, 26):  # a dark column under a bright vessel cross-section
        shadowed[40:44, w, 3] = 1.0
        shadowed[44:, w, 3] *= 0.2
    error = np.abs(detect_bm_rows(shadowed, eye.spacing) - truth)[18:28, 3]
    assert error.max() < 2.0


def test_flatten_imported_uses_the_rpe_labels_when_present_and_detection_otherwise():
    eye, _truth = make_scanned_eye(PHANTOM, 0, "OD")
    by_labels = flatten_imported(eye, "auto")
    assert by_labels.meta["flattening"] == "labels"
    assert np.ptp(bm_rows_from_labels(by_labels.labels)) == 0
    unlabelled = flatten_imported(replace(eye, labels=None), "auto")
    assert unlabelled.meta["flattening"] == "detected"
    flat_bm = bm_rows_from_labels(flatten_imported(eye, "detect").labels)
    assert np.ptp(flat_bm) <= 3  # flattened to within a few rows by the image alone
    kept = flatten_imported(eye, "none")
    assert kept.meta["flattening"] == "none" and np.array_equal(kept.oct, eye.oct)
    assert "not flattened" in kept.meta["import_notes"][-1]


def test_flatten_by_labels_needs_the_rpe():
    eye, _ = make_scanned_eye(PHANTOM, 0, "OD")
    with pytest.raises(DataError, match="--flatten labels needs labels with the RPE"):
        flatten_imported(replace(eye, labels=None), "labels")
