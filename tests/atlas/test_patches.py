"""Random strided patches: the reference's strides and phases, offsets inside the eye, coordinates at the
voxels' mm positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atlas_registration.datasets.coordinates import grid_extent, normalise
from atlas_registration.datasets.patches import FullEyeDataset, PatchGeometry, StridedPatchDataset


@pytest.mark.parametrize(
    ("shape", "patch", "size", "stride"),
    [
        ((231, 496, 64), (231, 62, 64), (231, 62, 64), (1, 8, 1)),  # the paper's patch of a subsmpl8 eye
        ((231, 496, 512), (231, 62, 64), (231, 62, 64), (1, 8, 8)),  # of a dense eye
        ((496, 512, 49), (231, 62, 64), (231, 62, 49), (2, 8, 1)),  # fewer B-scans than the patch: all of them
        ((10, 10, 10), (4, 1, 10), (4, 1, 10), (2, 10, 1)),
    ],
)
def test_downsample_stride_is_n_over_p(shape, patch, size, stride):
    geometry = PatchGeometry.fit(shape, patch)
    assert geometry.size == size
    assert geometry.stride == stride
    assert geometry.starts == stride  # a random phase in [0, stride)


def test_crop_is_a_contiguous_block_at_any_offset():
    geometry = PatchGeometry.fit((20, 12, 9), (5, 4, 3), "crop")
    assert geometry.stride == (1, 1, 1) and geometry.starts == (16, 9, 7)


@pytest.mark.parametrize("mode", ["downsample", "crop"])
def test_patch_indices_stay_inside_volume_for_every_offset(mode):
    shape = (20, 12, 9)
    geometry = PatchGeometry.fit(shape, (5, 4, 3), mode)
    for offset in np.ndindex(*geometry.starts):
        for axis, index in enumerate(geometry.indices(offset)):
            assert index.min() >= 0 and index.max() < shape[axis]


def test_patch_holds_values_and_coordinates_of_its_voxels(tiny_eyes, tiny_extent):
    eye = tiny_eyes[0]  # [32, 8, 16] with patch (8, 4, 8): strides 4, 2, 2
    data = StridedPatchDataset([eye], tiny_extent, (8, 4, 8))
    torch.manual_seed(5)
    sample = data[0]
    assert sample["coords"].shape == (8, 4, 8, 3)
    assert sample["intensity"].shape == sample["labels"].shape == (8, 4, 8)
    rows = np.rint((sample["coords"][:, 0, 0, 0].numpy() + 1) / 2 * tiny_extent[0] / eye.spacing[0]).astype(int)
    cols = np.rint((sample["coords"][0, :, 0, 1].numpy() + 1) / 2 * tiny_extent[1] / eye.spacing[1]).astype(int)
    scans = np.rint((sample["coords"][0, 0, :, 2].numpy() + 1) / 2 * tiny_extent[2] / eye.spacing[2]).astype(int)
    assert (set(np.diff(rows)), set(np.diff(cols)), set(np.diff(scans))) == ({4}, {2}, {2})
    np.testing.assert_array_equal(sample["intensity"].numpy(), eye.oct[np.ix_(rows, cols, scans)])
    np.testing.assert_array_equal(sample["labels"].numpy(), eye.labels[np.ix_(rows, cols, scans)])


def test_phases_vary_and_cover_every_voxel(tiny_eyes, tiny_extent):
    data = StridedPatchDataset(tiny_eyes[:1], tiny_extent, (8, 4, 8))
    starts = np.array([data[0]["coords"][0, 0, 0].tolist() for _ in range(200)])
    counts = [len(np.unique(starts[:, axis])) for axis in range(3)]
    assert counts == [4, 2, 2]


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
