"""The interpolation tests' tiny config and trainer (tests/interpolation/tiny_configs.py), for the GPU tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interpolation"))
from tiny_configs import tiny_config


@pytest.fixture
def make_config():
    """The :func:`tiny_config` factory."""
    return tiny_config
