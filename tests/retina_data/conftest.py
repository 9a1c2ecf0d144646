"""Trees of small eyes (see ``eye_builders``) for the dataset-layout tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from eye_builders import build_eye

from retina_data.tree import write_dataset_info, write_eye


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[..., Path]:
    """Write ``n_subjects`` subjects (OD and OS each) into a fresh tree; returns its folder."""

    def make(n_subjects: int = 3, name: str = "tree") -> Path:
        data_dir = tmp_path / name
        for i in range(n_subjects):
            for j, laterality in enumerate(("OD", "OS")):
                write_eye(data_dir, build_eye(f"sub{i + 1:03d}", laterality, seed=2 * i + j))
        write_dataset_info(data_dir, name)
        return data_dir

    return make
