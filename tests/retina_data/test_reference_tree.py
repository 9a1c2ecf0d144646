"""A NIfTI tree written as the reference code writes it: [W, H, D] arrays, OCT uint8 0..255."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from retina_data.tree import read_dataset, read_eye

W, H, D = 6, 10, 4
SPACING_WHD = (0.0117, 0.0039, 0.2)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, np.diag([*SPACING_WHD, 1.0]))
    image.header.set_zooms(SPACING_WHD)
    nib.save(image, str(path))


@pytest.fixture
def reference_tree(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    oct_whd = rng.integers(0, 256, (W, H, D), dtype=np.uint8)
    labels_whd = rng.integers(0, 13, (W, H, D)).astype(np.uint8)
    _save(tmp_path / "sub001" / "OD" / "oct_flat_subsmpl16_od.nii.gz", oct_whd)
    _save(tmp_path / "sub001" / "OD" / "oct_seg_flat_subsmpl16_od.nii.gz", labels_whd)
    return tmp_path, oct_whd, labels_whd


def test_reference_tree_is_transposed_to_h_w_d_and_divided_by_255(reference_tree) -> None:
    data_dir, oct_whd, labels_whd = reference_tree
    eye = read_eye(data_dir, "sub001", "OD", subsample=16, layout="reference")
    assert eye.shape == (H, W, D)
    assert eye.oct.dtype == np.float32
    assert np.allclose(eye.oct, oct_whd.transpose(1, 0, 2) / 255.0)
    assert np.array_equal(eye.labels, labels_whd.transpose(1, 0, 2))
    assert eye.spacing == pytest.approx((0.0039, 0.0117, 0.2))


def test_our_layout_reads_the_same_files_as_stored(reference_tree) -> None:
    data_dir, oct_whd, _ = reference_tree
    (eye,) = read_dataset(data_dir, subsample=16)
    assert eye.shape == (W, H, D) and np.array_equal(eye.oct, oct_whd)
    (ref,) = read_dataset(data_dir, subsample=16, layout="reference")
    assert ref.shape == (H, W, D)
