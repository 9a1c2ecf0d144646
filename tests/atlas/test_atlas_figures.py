"""Each atlas figure is written as a PNG of the expected layout, and never over an existing file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_atlas_eyes import SPACING, layered_eye

from atlas_registration import plots
from retina_data.errors import OutputExistsError


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_atlas_slices_are_three_panels_wide(tmp_path: Path) -> None:
    eye = layered_eye()
    path = plots.plot_atlas_slices(eye.oct, eye.labels, SPACING, tmp_path / "atlas.png")
    width, height = png_size(path)
    assert width > 2.5 * height


def test_registration_figure_is_written(tmp_path: Path) -> None:
    eye, shifted = layered_eye(), layered_eye(shift=3)
    path = plots.plot_registration(
        eye.oct, eye.labels, eye.labels, shifted.labels, tmp_path / "reg.png", spacing=SPACING
    )
    width, height = png_size(path)
    assert width > height


def test_jacobian_figure_is_written(tmp_path: Path) -> None:
    det = np.ones((20, 12, 6))
    det[5:8, 3:6, 2] = -0.5
    path = plots.plot_jacobian(det, tmp_path / "jacobian.png", spacing=SPACING)
    assert png_size(path)[0] > 0


def test_resolution_figure_is_written(tmp_path: Path) -> None:
    results = {"atlas only": {1: (0.7, 0.02), 8: (0.69, float("nan"))}, "ginr": {1: (0.9, 0.01), 32: (0.85, 0.03)}}
    path = plots.plot_resolution(results, tmp_path / "resolution.png")
    assert png_size(path)[0] > 0


def test_an_existing_figure_is_kept_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "jacobian.png"
    path.write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        plots.plot_jacobian(np.ones((8, 8, 4)), path)
    assert path.read_bytes() == b"keep"
    plots.plot_jacobian(np.ones((8, 8, 4)), path, overwrite=True)
    assert png_size(path)[0] > 0
