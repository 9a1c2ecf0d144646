"""Small phantom eyes and configs shared by the interpolation tests."""

from __future__ import annotations

import pytest
import torch

from anisotropic_interpolation.config import ExperimentConfig
from retina_data.config import from_dict
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


def tiny_config(**sections: dict) -> ExperimentConfig:
    """A small, fast experiment config; ``sections`` update keys per section (``MODEL={...}``)."""
    data = {
        "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": 4},
        "TRAINING": {"LATENT_CODE": {"SIZE": 8}, "TOTAL_EPOCHS": 4, "EPOCHS_TIL_SUMMARY": 2,
                     "LEARNING_RATE": 0.003, "BATCH_POINTS": 512, "STEPS_PER_EPOCH": 5, "LOSS_RECON": "MSE",
                     "CHECKPOINT_EVERY": 2},
        "MODEL": {"NUM_LAYERS": 2, "HIDDEN_SIZE": 16, "ACTIVATION": "SIREN"},
        "TEST": {"TOTAL_EPOCHS": 4, "EPOCHS_TIL_SUMMARY": 2, "BATCH_POINTS": 512, "STEPS_PER_EPOCH": 5,
                 "NUM_SAMPLES": 4, "LEARNING_RATE": 0.01},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return from_dict(data, ExperimentConfig, source="tiny config")


@pytest.fixture
def make_config():
    """The :func:`tiny_config` factory."""
    return tiny_config
