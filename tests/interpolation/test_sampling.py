"""Point batches: coordinates, intensities, labels and SLO values agree with the eyes they came from."""

from __future__ import annotations

import numpy as np
import torch

from anisotropic_interpolation.sampling import SparseVolumes, slice_coordinates


def test_slice_coordinates_map_the_input_bscans_onto_minus_one_to_one() -> None:
    coords = slice_coordinates(np.array([0.0, 0.5, 1.0, 1.25]), np.array([0.0, 1.0]), scale=2.0)
    assert np.allclose(coords, [-2.0, 0.0, 2.0, 3.0])


def test_batch_values_are_those_of_the_sampled_voxels(tiny_eyes) -> None:
    sparse = [eye.subsample(4) for eye in tiny_eyes]
    data = SparseVolumes.from_eyes(sparse, use_labels=True, use_slo=True, slice_scale=1.0, device="cpu")
    batch = data.sample(6, 3, torch.Generator().manual_seed(0))
    assert batch.coords.shape == (54, 3) and batch.intensity.shape == (6, 3, 3)
    height, width = data.height, data.width
    row = torch.round((batch.coords[:, 0] + 1) / 2 * (height - 1)).long()
    col = torch.round((batch.coords[:, 1] + 1) / 2 * (width - 1)).long()
    bscan = torch.round((batch.coords[:, 2] + 1) / 2 * (data.num_slices - 1)).long()
    eye = batch.eye
    assert torch.equal(batch.intensity.reshape(-1), data.intensity[eye, row, col, bscan])
    assert torch.equal(batch.labels, data.labels[eye, row, col, bscan].long())
    expected_slo = torch.stack([torch.as_tensor(sparse[e].slo_at(sparse[e].bscan_positions[[s]]))[c, 0]
                                for e, c, s in zip(eye.tolist(), col.tolist(), bscan.tolist())])
    assert torch.allclose(batch.extra[:, 0], expected_slo)


def test_patches_are_contiguous_pixels_of_one_bscan(tiny_eyes) -> None:
    data = SparseVolumes.from_eyes([tiny_eyes[0].subsample(4)], use_labels=False, use_slo=False,
                                   slice_scale=1.0, device="cpu")
    batch = data.sample(2, 4, torch.Generator().manual_seed(3))
    coords = batch.coords.reshape(2, 4, 4, 3)
    assert torch.all(coords[:, :, :, 2] == coords[:, :1, :1, 2])
    assert torch.allclose(coords[:, 1:, :, 0] - coords[:, :-1, :, 0], torch.full((2, 3, 4), 2 / 31), atol=1e-6)
    assert batch.extra is None and batch.labels is None
