"""Small phantom eyes and configs shared by the interpolation tests."""

from __future__ import annotations

import pytest
import torch
from tiny_configs import tiny_config

from retina_data.eye import Eye
from retina_data.phantom import PhantomConfig, make_eye

TINY_SHAPE = (32, 16, 16)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_eyes() -> list[Eye]:
    """Four dense phantom eyes ``[32, 16, 16]`` with labels and SLO (two subjects)."""
    cfg = PhantomConfig(n_subjects=2, shape=TINY_SHAPE)
    return [make_eye(cfg, subject, laterality) for subject in range(2) for laterality in ("OD", "OS")]


@pytest.fixture
def make_config():
    """The :func:`tiny_config` factory."""
    return tiny_config
