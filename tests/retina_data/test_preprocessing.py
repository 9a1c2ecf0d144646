"""Preprocessing: flattening at Bruch's membrane, B-scan normalisation, cropping, subsampling."""

from __future__ import annotations

import numpy as np
import pytest
from eye_builders import SPACING, build_eye

from retina_data.errors import OutputExistsError
from retina_data.eye import Eye
from retina_data.labels import labels_from_boundaries
from retina_data.preprocessing import (
    bm_rows_from_labels,
    crop,
    crop_around_bm,
    flatten_at_bm,
    normalize_bscans,
    shift_ascans,
    write_subsampled,
)
from retina_data.tree import eye_files, read_eye

HEIGHT, WIDTH, DEPTH = 64, 16, 6


def _curved_bm() -> np.ndarray:
    """BM rows ``[W, D]``: a tilt along both axes plus a curvature across the B-scan."""
    w, d = np.meshgrid(np.arange(WIDTH), np.arange(DEPTH), indexing="ij")
    return np.rint(30 + 0.6 * w - 1.5 * d + 0.08 * (w - 8) ** 2).astype(float)


def _tilted_eye() -> Eye:
    """Layers 2 rows thick above a curved, tilted BM; intensity = label / 12."""
    bm = _curved_bm()
    labels = labels_from_boundaries({i: bm - 2 * (11 - i) for i in range(12)}, HEIGHT)
    return Eye(oct=labels.astype(np.float32) / 12, spacing=SPACING, subject="s", labels=labels)


def test_bm_row_is_the_first_row_below_the_rpe():
    labels = np.zeros((10, 2, 1), dtype=np.uint8)
    labels[3:6, 0, 0] = 11
    labels[6:, 0, 0] = 12
    labels[4:8, 1, 0] = 11
    assert bm_rows_from_labels(labels)[:, 0].tolist() == [6.0, 8.0]


def test_ascans_without_rpe_take_the_bm_of_the_nearest_ascan():
    labels = np.zeros((10, 3, 1), dtype=np.uint8)
    labels[4, 0, 0] = 11
    labels[6, 2, 0] = 11
    labels[:, 1, 0] = 0
    rows = bm_rows_from_labels(labels)[:, 0]
    assert rows[0] == 5 and rows[2] == 7 and rows[1] in (5, 7)


def test_flattening_a_tilted_curved_volume_puts_bm_on_the_target_row():
    flat = flatten_at_bm(_tilted_eye(), target_row=40)
    assert np.all(bm_rows_from_labels(flat.labels) == 40)
    assert flat.meta["flatten_target_row"] == 40


def test_flattened_ascans_are_all_the_same_profile():
    flat = flatten_at_bm(_tilted_eye(), target_row=40)
    reference = flat.labels[:, :1, :1]
    assert np.all(flat.labels == reference)
    retina = np.broadcast_to(reference[:40], (40, WIDTH, DEPTH)).astype(np.float32) / 12
    assert np.array_equal(flat.oct[:40], retina)


def test_flattening_from_given_bm_rows_matches_flattening_from_labels():
    eye = _tilted_eye()
    from_rows = flatten_at_bm(Eye(oct=eye.oct, spacing=SPACING, subject="s"), bm_rows=_curved_bm(), target_row=40)
    assert np.array_equal(from_rows.oct, flatten_at_bm(eye, target_row=40).oct)
    assert from_rows.labels is None


def test_default_target_is_the_median_bm_row():
    flat = flatten_at_bm(_tilted_eye())
    assert flat.meta["flatten_target_row"] == int(np.rint(np.median(_curved_bm())))


def test_fractional_shift_interpolates_intensities_and_rounds_labels():
    volume = np.zeros((6, 1, 1), dtype=np.float32)
    volume[2] = 1.0
    shifted = shift_ascans(volume, np.full((1, 1), 0.5), order=1, fill="zero")
    assert shifted[:, 0, 0].tolist() == [0.0, 0.0, 0.5, 0.5, 0.0, 0.0]
    labels = np.arange(6, dtype=np.uint8)[:, None, None]
    assert shift_ascans(labels, np.full((1, 1), 1.4), order=0, fill="edge")[:, 0, 0].tolist() == [0, 0, 1, 2, 3, 4]


def test_rows_shifted_in_take_zero_intensity_and_the_edge_label():
    volume = np.full((5, 1, 1), 0.7, dtype=np.float32)
    labels = np.array([0, 0, 11, 12, 12], dtype=np.uint8)[:, None, None]
    up = np.full((1, 1), -2.0)
    assert shift_ascans(volume, up, order=1, fill="zero")[:, 0, 0].tolist() == pytest.approx([0.7, 0.7, 0.7, 0, 0])
    assert shift_ascans(labels, up, order=0, fill="edge")[:, 0, 0].tolist() == [11, 12, 12, 12, 12]
    assert shift_ascans(labels, -up, order=0, fill="edge")[:, 0, 0].tolist() == [0, 0, 0, 0, 11]


def test_minmax_normalisation_spans_zero_to_one_in_every_bscan():
    rng = np.random.default_rng(0)
    volume = rng.random((20, 8, 4), dtype=np.float32) * np.array([1, 5, 50, 0.1], dtype=np.float32) + 3
    out = normalize_bscans(volume)
    assert out.dtype == np.float32
    assert out.min(axis=(0, 1)) == pytest.approx([0, 0, 0, 0])
    assert out.max(axis=(0, 1)) == pytest.approx([1, 1, 1, 1])


def test_constant_bscans_normalise_to_zero_without_nan():
    volume = np.ones((10, 4, 3), dtype=np.float32)
    volume[:, :, 1] = np.linspace(0, 2, 40).reshape(10, 4)
    out = normalize_bscans(volume, "percentile")
    assert np.all(np.isfinite(out))
    assert np.all(out[:, :, [0, 2]] == 0) and out[:, :, 1].max() == 1


def test_percentile_normalisation_clips_outliers():
    volume = np.tile(np.linspace(0, 1, 100, dtype=np.float32).reshape(100, 1, 1), (1, 2, 1))
    volume[0, 0, 0] = 1000.0
    out = normalize_bscans(volume, "percentile", (0.0, 90.0))
    assert out[0, 0, 0] == 1.0
    assert np.mean(out == 1.0) > 0.05


def test_crop_updates_positions_spacing_and_slo_columns():
    eye = build_eye(positions=np.array([0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2]))
    cropped = crop(eye, rows=(5, 25), columns=(2, 10), bscans=(3, 6))
    assert cropped.shape == (20, 8, 3)
    assert np.array_equal(cropped.oct, eye.oct[5:25, 2:10, 3:6])
    assert cropped.bscan_positions.tolist() == [0.4, 0.6, 0.8]
    assert cropped.spacing == (SPACING[0], SPACING[1], pytest.approx(0.2))
    assert cropped.slo.shape == (8, 3) and np.array_equal(cropped.slo, eye.slo[2:10, 3:6])
    assert cropped.meta["crop_origin"] == [5, 2, 3]


def test_crop_of_a_subsampled_eye_keeps_the_dense_slo_between_its_bscans():
    sparse = build_eye().subsample(2)
    cropped = crop(sparse, bscans=(1, 3))
    assert cropped.bscan_positions.tolist() == pytest.approx([2 * SPACING[2], 4 * SPACING[2]])
    assert cropped.slo.shape == (12, 3)


def test_depth_window_around_bm_has_the_requested_height_and_pads_outside():
    flat = flatten_at_bm(_tilted_eye(), target_row=40)
    window = crop_around_bm(flat, above=30, below=30)
    assert window.shape == (60, WIDTH, DEPTH)
    assert np.all(bm_rows_from_labels(window.labels) == 30)
    assert np.all(window.oct[54:] == 0) and np.all(window.labels[54:] == 12)


def test_write_subsampled_writes_every_kth_bscan_and_refuses_to_overwrite(make_tree):
    data_dir = make_tree(2)
    written = write_subsampled(data_dir, [2, 4], progress=False)
    assert len([p for p in written if p.name.endswith(".nii.gz")]) == 2 * 2 * 2 * 2
    sparse = read_eye(data_dir, "sub002", "OS", subsample=4)
    dense = read_eye(data_dir, "sub002", "OS")
    assert np.array_equal(sparse.bscan_positions, dense.bscan_positions[::4])
    assert np.array_equal(sparse.labels, dense.labels[:, :, ::4])
    assert eye_files(data_dir, "sub001", "OD", 2).labels.is_file()
    with pytest.raises(OutputExistsError):
        write_subsampled(data_dir, [2], progress=False)


def test_shifting_block_by_block_gives_the_same_volume(monkeypatch):
    eye = _tilted_eye()
    shifts = 40 - _curved_bm() + 0.3
    whole = shift_ascans(eye.oct, shifts, order=1, fill="zero")
    monkeypatch.setattr("retina_data.preprocessing.BLOCK_VOXELS", HEIGHT * WIDTH * 4)
    assert np.array_equal(shift_ascans(eye.oct, shifts, order=1, fill="zero"), whole)
