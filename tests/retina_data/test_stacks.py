"""Import of B-scan image stacks (PNG/TIFF folders, multi-page TIFF)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from retina_data.errors import DataError
from retina_data.importers.stacks import import_stack, natural_key, read_image_stack

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
    assert np.array_equal(
        read_image_stack(tmp_path / "stack.tif"), read_image_stack(_write_pngs(tmp_path / "p", stack))
    )


def test_stack_with_labels_and_slo_becomes_an_eye(tmp_path):
    stack = _bscans()
    labels = np.random.default_rng(1).integers(0, 13, (D, H, W), dtype=np.uint8)
    label_dir = tmp_path / "labels"
    label_dir.mkdir()
    for d in range(D):
        tifffile.imwrite(label_dir / f"seg{d}.tiff", labels[d])
    slo = np.random.default_rng(2).integers(0, 256, (D, W), dtype=np.uint8)
    Image.fromarray(slo).save(tmp_path / "slo.png")
    eye = import_stack(
        _write_pngs(tmp_path / "png", stack), SPACING, "p7", "OS", labels=label_dir, slo=tmp_path / "slo.png"
    )
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
    with pytest.raises(DataError, match=r"bscan_5.png"):
        read_image_stack(folder)


def test_label_stack_of_another_shape_is_a_data_error(tmp_path):
    tifffile.imwrite(tmp_path / "labels.tif", np.zeros((D - 1, H, W), dtype=np.uint8))
    with pytest.raises(DataError, match="label stack shape"):
        import_stack(_write_pngs(tmp_path / "png", _bscans()), SPACING, "p", "OD", labels=tmp_path / "labels.tif")


# --- image formats as users have them -------------------------------------------------------------


def _palette_image(indices: np.ndarray, palette: list[int]) -> Image.Image:
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(palette + [0] * (768 - len(palette)))
    return image


def test_a_palette_bscan_is_read_through_its_palette_not_as_its_indices(tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    indices = np.tile(np.array([0, 1, 2, 3], dtype=np.uint8), (H, W // 4))
    greys = [200, 200, 200, 10, 10, 10, 90, 90, 90, 255, 255, 255]  # index i -> grey greys[3 i]
    for d in range(2):
        _palette_image(indices, greys).save(folder / f"b{d}.png")
    volume = read_image_stack(folder)
    assert volume[0, :4, 0].tolist() == [200, 10, 90, 255]


def test_a_colour_bscan_becomes_its_luminance_and_grey_alpha_drops_the_alpha(tmp_path):
    colour = np.zeros((H, W, 3), dtype=np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 100, 200, 50
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    grey_alpha = np.stack([np.full((H, W), 77, np.uint8), np.full((H, W), 3, np.uint8)], -1)
    Image.fromarray(grey_alpha, mode="LA").save(tmp_path / "la.png")
    assert read_image_stack(tmp_path / "rgb.png")[0, 0, 0] == round(0.299 * 100 + 0.587 * 200 + 0.114 * 50)
    assert read_image_stack(tmp_path / "la.png")[0, 0, 0] == 77


def test_a_stack_mixing_8_and_16_bit_bscans_is_refused_naming_the_odd_file(tmp_path):
    folder = _write_pngs(tmp_path / "png", _bscans()[:3])
    tifffile.imwrite(folder / "bscan_3.tif", np.zeros((H, W), np.uint16))
    with pytest.raises(DataError, match=r"bscan_3.tif: uint16 samples, but bscan_0.png has uint8"):
        read_image_stack(folder)


def test_nan_in_a_float_tiff_is_refused_not_stored_as_zero(tmp_path):
    pages = np.random.default_rng(3).random((D, H, W)).astype(np.float32)
    pages[2, 3, 4] = np.nan
    tifffile.imwrite(tmp_path / "stack.tif", pages)
    with pytest.raises(DataError, match="1 NaN or Inf intensities"):
        import_stack(tmp_path / "stack.tif", SPACING, "p", "OD")


def test_a_palette_label_map_holds_its_indices_as_labels(tmp_path):
    labels = np.random.default_rng(4).integers(0, 13, (D, H, W), dtype=np.uint8)
    folder = tmp_path / "labels"
    folder.mkdir()
    for d in range(D):
        _palette_image(labels[d], [255, 0, 0, 0, 255, 0] * 13).save(folder / f"l{d}.png")
    eye = import_stack(_write_pngs(tmp_path / "png", _bscans()), SPACING, "p", "OD", labels=folder)
    assert np.array_equal(eye.labels, labels.transpose(1, 2, 0))


def _colour_label_stack(tmp_path, labels: np.ndarray, table: dict[int, list[int]]):
    folder = tmp_path / "labels"
    folder.mkdir()
    lut = np.array([table[i] for i in range(len(table))], dtype=np.uint8)
    for d in range(labels.shape[0]):
        Image.fromarray(lut[labels[d]]).save(folder / f"l{d}.png")
    return folder


def test_colour_label_maps_are_refused_without_a_colour_table_and_mapped_with_one(tmp_path):
    table = {0: [0, 0, 0], 1: [255, 0, 0], 2: [0, 128, 255]}
    labels = np.random.default_rng(5).integers(0, 3, (D, H, W), dtype=np.uint8)
    folder = _colour_label_stack(tmp_path, labels, table)
    bscans = _write_pngs(tmp_path / "png", _bscans())
    with pytest.raises(DataError, match=r"colour label images.*colour table"):
        import_stack(bscans, SPACING, "p", "OD", labels=folder)
    (tmp_path / "colours.yaml").write_text("\n".join(f"{k}: {v}" for k, v in table.items()))
    eye = import_stack(bscans, SPACING, "p", "OD", labels=folder, label_colours=tmp_path / "colours.yaml")
    assert np.array_equal(eye.labels, labels.transpose(1, 2, 0))


def test_a_colour_missing_from_the_table_is_named(tmp_path):
    labels = np.random.default_rng(6).integers(0, 3, (D, H, W), dtype=np.uint8)
    folder = _colour_label_stack(tmp_path, labels, {0: [0, 0, 0], 1: [255, 0, 0], 2: [0, 128, 255]})
    (tmp_path / "colours.yaml").write_text("0: [0, 0, 0]\n1: [255, 0, 0]\n")
    with pytest.raises(DataError, match=r"1 colour\(s\) not in the colour table, e\.g\. \[0, 128, 255\]"):
        import_stack(
            _write_pngs(tmp_path / "png", _bscans()),
            SPACING,
            "p",
            "OD",
            labels=folder,
            label_colours=tmp_path / "colours.yaml",
        )


def test_a_0_255_mask_becomes_labels_0_1_with_a_note(tmp_path):
    mask = (np.random.default_rng(7).random((D, H, W)) > 0.5).astype(np.uint8) * 255
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    eye = import_stack(_write_pngs(tmp_path / "png", _bscans()), SPACING, "p", "OD", labels=tmp_path / "mask.tif")
    assert set(np.unique(eye.labels)) == {0, 1}
    assert np.array_equal(eye.labels, (mask == 255).transpose(1, 2, 0))
    assert any("0/255 mask" in note for note in eye.meta["import_notes"])


def test_float_labels_must_be_whole_numbers(tmp_path):
    tifffile.imwrite(tmp_path / "labels.tif", np.full((D, H, W), 2.5, np.float32))
    with pytest.raises(DataError, match="not all whole numbers"):
        import_stack(_write_pngs(tmp_path / "png", _bscans()), SPACING, "p", "OD", labels=tmp_path / "labels.tif")
