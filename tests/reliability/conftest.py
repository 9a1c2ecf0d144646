"""Fixtures of the reliability tests: the tiny phantom tree and the entry-point launchers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from entry_points import PHANTOM, Launcher

from retina_data.folds import FOLDS_FILE, write_folds_for_tree
from retina_data.phantom import write_phantom


@pytest.fixture(scope="session")
def phantom_tree(tmp_path_factory) -> Path:
    """The tiny phantom NIfTI tree with its folds file (3 folds); copy it before changing it."""
    data_dir = tmp_path_factory.mktemp("phantom") / "data"
    write_phantom(data_dir, PHANTOM, progress=False)
    write_folds_for_tree(data_dir, data_dir / FOLDS_FILE, k=3, seed=0)
    return data_dir


@pytest.fixture(scope="session")
def launchers():
    """``launchers(tree)``: one :class:`Launcher` per tree (started on first use) with its entry modules loaded."""
    preload = {
        "interpolation": [
            "anisotropic_interpolation.train_test_geninr",
            "anisotropic_interpolation.train_test_singleinr",
        ],
        "atlas": [
            "atlas_registration.GINR_Atlas_base",
            "atlas_registration.inference_commandline",
            "atlas_registration.pretrain_atlas",
        ],
        "predict": ["anisotropic_interpolation.predict", "anisotropic_interpolation.densify_cohort"],
        "data": ["retina_data.cli", "retina_data.validation", "retina_data.export", "retina_data.preprocessing"],
    }
    started: dict[str, Launcher] = {}

    def get(tree: str) -> Launcher:
        if tree not in started:
            started[tree] = Launcher(preload[tree])
        return started[tree]

    yield get
    for launcher in started.values():
        launcher.close()


@pytest.fixture
def data_copy(phantom_tree, tmp_path) -> Path:
    """A private copy of the phantom tree (with its folds file)."""
    return Path(shutil.copytree(phantom_tree, tmp_path / "data"))
