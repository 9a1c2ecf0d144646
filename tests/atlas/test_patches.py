"""Random strided patches: sizes, strides, offsets inside the eye, coordinates at the voxels' mm positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atlas_registration.datasets.coordinates import grid_extent, normalise
from atlas_registration.datasets.patches import FullEyeDataset, PatchGeometry, StridedPatchDataset


@pytest.mark.parametrize(("shape", "patch", "factor", "size", "stride"), [
    ((64, 64, 256), (32, 16, 32), 4, (32, 16, 32), (2, 4, 4)),   # H too short for stride 4: 2
    ((496, 512, 49), (231, 62, 64), 8, (231, 62, 49), (2, 8, 1)),  # fewer B-scans than the patch
    ((10, 10, 10), (4, 1, 10), 3, (4, 1, 10), (3, 1, 1)),
])
def test_geometry_fits_patch_and_stride_inside_volume(shape, patch, factor, size, stride):
    geometry = PatchGeometry.fit(shape, patch, factor)
    assert geometry.size == size
    assert geometry.stride == stride
    assert all(m >= 0 for m in geometry.max_offset(shape))


def test_patch_indices_stay_inside_volume_for_every_offset():
    shape = (20, 12, 9)
    geometry = PatchGeometry.fit(shape, (5, 4, 3), 4)
    for offset in np.ndindex(*(m + 1 for m in geometry.max_offset(shape))):
        for axis, index in enumerate(geometry.indices(offset)):
            assert index.min() >= 0 and index.max() < shape[axis]


def test_patch_holds_values_and_coordinates_of_its_voxels(tiny_eyes, tiny_extent):
    eye = tiny_eyes[0]
    data = StridedPatchDataset([eye], tiny_extent, (8, 4, 8), factor=2)
    torch.manual_seed(5)
    sample = data[0]
    assert sample["coords"].shape == (8, 4, 8, 3)
    assert sample["intensity"].shape == sample["labels"].shape == (8, 4, 8)
    rows = np.rint((sample["coords"][:, 0, 0, 0].numpy() + 1) / 2 * tiny_extent[0] / eye.spacing[0]).astype(int)
    cols = np.rint((sample["coords"][0, :, 0, 1].numpy() + 1) / 2 * tiny_extent[1] / eye.spacing[1]).astype(int)
    scans = np.rint((sample["coords"][0, 0, :, 2].numpy() + 1) / 2 * tiny_extent[2] / eye.spacing[2]).astype(int)
    assert set(np.diff(rows)) == set(np.diff(cols)) == set(np.diff(scans)) == {2}
    np.testing.assert_array_equal(sample["intensity"].numpy(), eye.oct[np.ix_(rows, cols, scans)])
    np.testing.assert_array_equal(sample["labels"].numpy(), eye.labels[np.ix_(rows, cols, scans)])


def test_offsets_vary_and_cover_the_valid_range(tiny_eyes, tiny_extent):
    data = StridedPatchDataset(tiny_eyes[:1], tiny_extent, (8, 4, 8), factor=2)
    starts = np.array([data[0]["coords"][0, 0, 0].tolist() for _ in range(200)])
    counts = [len(np.unique(starts[:, axis])) for axis in range(3)]
    assert counts == [m + 1 for m in data.geometry.max_offset(tiny_eyes[0].shape)]


def test_sparse_eye_keeps_true_bscan_positions(tiny_eyes, tiny_extent):
    eye = tiny_eyes[0]
    sparse = eye.subsample(4)
    full = FullEyeDataset([eye], tiny_extent)[0]["coords"]
    sparse_coords = FullEyeDataset([sparse], tiny_extent)[0]["coords"]
    np.testing.assert_allclose(sparse_coords.numpy(), full[:, :, ::4].numpy(), atol=1e-6)


def test_dense_grid_spans_minus_one_to_one(tiny_eyes):
    eye = tiny_eyes[0]
    extent = grid_extent(eye.shape, eye.spacing)
    coords = FullEyeDataset([eye], extent)[0]["coords"].reshape(-1, 3)
    np.testing.assert_allclose(coords.amin(0).numpy(), -1.0, atol=1e-6)
    np.testing.assert_allclose(coords.amax(0).numpy(), 1.0, atol=1e-6)
    assert normalise(np.array([extent[0] / 2]), extent[0])[0] == pytest.approx(0.0, abs=1e-7)
