"""A small, fast interpolation config for tests (also used by the GPU tests)."""

from __future__ import annotations

from anisotropic_interpolation.config import ExperimentConfig
from retina_data.config import from_dict


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
