"""The overview figure of one eye."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retina_data.errors import DataError, OutputExistsError
from retina_data.eye import Eye
from retina_data.figures import plot_phantom_overview
from retina_data.phantom import PhantomConfig, make_eye

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def eye() -> Eye:
    return make_eye(PhantomConfig(n_subjects=1, shape=(48, 24, 12), pathology_fraction=1.0), 0, "OS")


def test_overview_is_written_as_a_png(eye: Eye, tmp_path: Path) -> None:
    path = plot_phantom_overview(eye, tmp_path / "overview.png")
    assert path == tmp_path / "overview.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert list(tmp_path.iterdir()) == [path]


def test_overview_of_an_eye_without_labels_or_slo_has_fewer_panels(eye: Eye, tmp_path: Path) -> None:
    bare = replace(eye, labels=None, slo=None, slo_positions=None)
    full = Image.open(plot_phantom_overview(eye, tmp_path / "full.png"))
    reduced = Image.open(plot_phantom_overview(bare, tmp_path / "bare.png", bscan_index=0))
    assert reduced.width < full.width


def test_overview_refuses_to_overwrite_without_permission(eye: Eye, tmp_path: Path) -> None:
    path = tmp_path / "overview.png"
    path.write_bytes(b"old")
    with pytest.raises(OutputExistsError):
        plot_phantom_overview(eye, path)
    plot_phantom_overview(eye, path, overwrite=True)
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("index", [-1, 12])
def test_overview_rejects_a_bscan_outside_the_volume(eye: Eye, tmp_path: Path, index: int) -> None:
    with pytest.raises(DataError):
        plot_phantom_overview(eye, tmp_path / "overview.png", bscan_index=index)
    assert not any(tmp_path.iterdir())


def test_overview_accepts_a_dense_slo_beside_sparse_bscans(eye: Eye, tmp_path: Path) -> None:
    sparse = eye.subsample(4)
    assert sparse.slo.shape[1] == 4 * sparse.shape[2]
    path = plot_phantom_overview(sparse, tmp_path / "sparse.png")
    assert np.asarray(Image.open(path)).shape[2] in (3, 4)
