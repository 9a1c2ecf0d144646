"""Point batches: coordinates, intensities, labels and SLO values agree with the eyes they came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anisotropic_interpolation.config import load_experiment_config
from anisotropic_interpolation.sampling import SparseVolumes, slice_coordinates

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "interpolation"


def test_slice_coordinates_map_the_input_bscans_onto_minus_one_to_one() -> None:
    coords = slice_coordinates(np.array([0.0, 0.5, 1.0, 1.25]), np.array([0.0, 1.0]), scale=2.0)
    assert np.allclose(coords, [-2.0, 0.0, 2.0, 3.0])


@pytest.mark.parametrize("name", ["geninr_config.yaml", "singleinr_config.yaml"])
def test_paper_configs_put_the_first_and_last_input_bscans_at_minus_and_plus_a_tenth(tiny_eyes, name) -> None:
    config = load_experiment_config(CONFIGS / name)
    sparse = tiny_eyes[0].subsample(4)
    data = SparseVolumes.from_eyes(
        [sparse], use_labels=False, use_slo=False, slice_scale=config.PREPROCESSING.SLICE_COORD_SCALE, device="cpu"
    )
    assert torch.allclose(data.slice_coords[0], torch.linspace(-1, 1, sparse.shape[2]) / 10)
    assert data.slice_coords[0, 0].item() == pytest.approx(-0.1) and data.slice_coords[0, -1].item() == pytest.approx(
        0.1
    )


def test_31_evaluation_bscans_get_the_references_z_and_the_16_inputs_keep_theirs() -> None:
    """``linspace(-1, 1, 31) / 10`` for the evaluation volume, ``linspace(-1, 1, 16) / 10`` for its
    every-2nd-B-scan input volume: the same z for the same B-scan."""
    positions = np.arange(31) * 0.047
    scale = load_experiment_config(CONFIGS / "geninr_config.yaml").PREPROCESSING.SLICE_COORD_SCALE
    assert np.allclose(slice_coordinates(positions, positions[::2], scale), np.linspace(-1, 1, 31) / 10, atol=1e-7)
    assert np.allclose(slice_coordinates(positions[::2], positions[::2], scale), np.linspace(-1, 1, 16) / 10, atol=1e-7)


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
    expected_slo = torch.stack(
        [
            torch.as_tensor(sparse[e].slo_at(sparse[e].bscan_positions[[s]]))[c, 0]
            for e, c, s in zip(eye.tolist(), col.tolist(), bscan.tolist())
        ]
    )
    assert torch.allclose(batch.extra[:, 0], expected_slo)


def test_patches_are_contiguous_pixels_of_one_bscan(tiny_eyes) -> None:
    data = SparseVolumes.from_eyes(
        [tiny_eyes[0].subsample(4)], use_labels=False, use_slo=False, slice_scale=1.0, device="cpu"
    )
    batch = data.sample(2, 4, torch.Generator().manual_seed(3))
    coords = batch.coords.reshape(2, 4, 4, 3)
    assert torch.all(coords[:, :, :, 2] == coords[:, :1, :1, 2])
    assert torch.allclose(coords[:, 1:, :, 0] - coords[:, :-1, :, 0], torch.full((2, 3, 4), 2 / 31), atol=1e-6)
    assert batch.extra is None and batch.labels is None
