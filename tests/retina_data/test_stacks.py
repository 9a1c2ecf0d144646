"""Import of B-scan image stacks (PNG/TIFF folders, multi-page TIFF)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from retina_data.errors import DataError
from retina_data.stacks import import_stack, natural_key, read_image_stack

SPACING = (0.0039, 0.0115, 0.12)
H, W, D = 20, 16, 12


def _bscans() -> np.ndarray:
    """``[D, H, W]`` uint8 B-scans; B-scan ``d`` holds the value ``10 * d`` in its first pixel."""
    stack = np.random.default_rng(0).integers(0, 256, (D, H, W), dtype=np.uint8)
    stack[:, 0, 0] = 10 * np.arange(D)
    return stack


def _write_pngs(folder, stack, prefix="bscan_"):
    folder.mkdir()
    for d, image in enumerate(stack):
        Image.fromarray(image).save(folder / f"{prefix}{d}.png")
    return folder


def test_natural_order_puts_2_before_10():
    assert sorted(["b10.png", "b2.png", "b1.png"], key=natural_key) == ["b1.png", "b2.png", "b10.png"]


def test_png_folder_is_read_in_natural_order_as_h_w_d(tmp_path):
    stack = _bscans()
    volume = read_image_stack(_write_pngs(tmp_path / "png", stack))
    assert volume.shape == (H, W, D)
    assert volume[0, 0].tolist() == (10 * np.arange(D)).tolist()
    assert np.array_equal(volume, stack.transpose(1, 2, 0))


def test_multipage_tiff_gives_the_same_volume_as_a_png_folder(tmp_path):
    stack = _bscans()
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    assert np.array_equal(read_image_stack(tmp_path / "stack.tif"), read_image_stack(_write_pngs(tmp_path / "p", stack)))


def test_stack_with_labels_and_slo_becomes_an_eye(tmp_path):
    stack = _bscans()
    labels = np.random.default_rng(1).integers(0, 13, (D, H, W), dtype=np.uint8)
    label_dir = tmp_path / "labels"
    label_dir.mkdir()
    for d in range(D):
        tifffile.imwrite(label_dir / f"seg{d}.tiff", labels[d])
    slo = np.random.default_rng(2).integers(0, 256, (D, W), dtype=np.uint8)
    Image.fromarray(slo).save(tmp_path / "slo.png")
    eye = import_stack(_write_pngs(tmp_path / "png", stack), SPACING, "p7", "OS", labels=label_dir,
                       slo=tmp_path / "slo.png")
    assert eye.eye_id == "p7_OS" and eye.spacing == SPACING
    assert eye.oct.dtype == np.float32 and np.allclose(eye.oct, stack.transpose(1, 2, 0) / 255)
    assert np.array_equal(eye.labels, labels.transpose(1, 2, 0))
    assert eye.slo.shape == (W, D) and np.allclose(eye.slo, slo.T / 255)
    assert eye.meta["import_notes"] == []


def test_slo_of_another_size_is_resampled_to_w_by_d(tmp_path):
    Image.fromarray(np.full((2 * D, 3 * W), 128, dtype=np.uint8)).save(tmp_path / "slo.png")
    eye = import_stack(_write_pngs(tmp_path / "png", _bscans()), SPACING, "p", "OD", slo=tmp_path / "slo.png")
    assert eye.slo.shape == (W, D) and np.allclose(eye.slo, 128 / 255)


def test_stack_without_labels_or_slo_is_valid_and_says_so(tmp_path):
    eye = import_stack(_write_pngs(tmp_path / "png", _bscans()), SPACING, "p", "OD")
    assert eye.labels is None and eye.slo is None
    assert eye.meta["import_notes"] == ["no label stack given: labels are None", "no SLO image given: SLO is None"]


def test_bscans_of_different_sizes_are_a_data_error_naming_the_file(tmp_path):
    folder = _write_pngs(tmp_path / "png", _bscans())
    Image.fromarray(np.zeros((H + 1, W), dtype=np.uint8)).save(folder / "bscan_5.png")
    with pytest.raises(DataError, match="bscan_5.png"):
        read_image_stack(folder)


def test_label_stack_of_another_shape_is_a_data_error(tmp_path):
    tifffile.imwrite(tmp_path / "labels.tif", np.zeros((D - 1, H, W), dtype=np.uint8))
    with pytest.raises(DataError, match="label stack shape"):
        import_stack(_write_pngs(tmp_path / "png", _bscans()), SPACING, "p", "OD", labels=tmp_path / "labels.tif")
