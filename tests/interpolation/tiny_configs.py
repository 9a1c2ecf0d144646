"""A small, fast interpolation config and population trainer for tests (also used by the GPU tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from anisotropic_interpolation.config import ExperimentConfig
from anisotropic_interpolation.distributed import EyeShard
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import NetworkTrainer
from retina_data.config import from_dict
from retina_data.eye import Eye


def tiny_config(**sections: dict) -> ExperimentConfig:
    """A small, fast experiment config; ``sections`` update keys per section (``MODEL={...}``)."""
    data = {
        "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": 4, "SLICE_COORD_SCALE": 1.0},  # as tiny_trainer's data
        "TRAINING": {
            "LATENT_CODE": {"SIZE": 8},
            "TOTAL_EPOCHS": 4,
            "EPOCHS_TIL_SUMMARY": 2,
            "LEARNING_RATE": 0.003,
            "BATCH_POINTS": 512,
            "STEPS_PER_EPOCH": 5,
            "LOSS_RECON": "MSE",
            "CHECKPOINT_EVERY": 2,
        },
        "MODEL": {"NUM_LAYERS": 2, "HIDDEN_SIZE": 16, "ACTIVATION": "SIREN"},
        "TEST": {
            "TOTAL_EPOCHS": 4,
            "EPOCHS_TIL_SUMMARY": 2,
            "BATCH_POINTS": 512,
            "STEPS_PER_EPOCH": 5,
            "NUM_SAMPLES": 4,
            "LEARNING_RATE": 0.01,
        },
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return from_dict(data, ExperimentConfig, source="tiny config")


def tiny_trainer(
    config: ExperimentConfig,
    eyes: list[Eye],
    device: torch.device | str = "cpu",
    checkpoint_dir: Path | None = None,
    shard: EyeShard | None = None,
    network_seed: int = 0,
) -> NetworkTrainer:
    """A trainer of a freshly seeded population network (latent 8, SLO input, 13 classes; its
    weights drawn after ``torch.manual_seed(network_seed)``) on every 4th B-scan of ``eyes`` (with a
    ``shard``: of this process's eyes among them), on ``device``."""
    held = eyes if shard is None else [eyes[index] for index in shard.indices]
    data = SparseVolumes.from_eyes(
        [eye.subsample(4) for eye in held], use_labels=True, use_slo=True, slice_scale=1.0, device=device
    )
    torch.manual_seed(network_seed)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=8, num_classes=13)).to(device)
    return NetworkTrainer(network, data, config, checkpoint_dir, progress=False, shard=shard)
