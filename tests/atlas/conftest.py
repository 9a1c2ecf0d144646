"""Tiny phantom eyes and a tiny config for the atlas tests (CPU, a few seconds each)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.coordinates import grid_extent
from atlas_registration.datasets.eyes import prepare_eye
from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.training import registration_module
from retina_data.phantom import PhantomConfig, make_eye

TINY_SHAPE = (32, 8, 16)


@pytest.fixture(scope="session")
def tiny_eyes():
    """Four prepared phantom eyes ``[32, 8, 16]`` with the 10 atlas classes (both lateralities)."""
    cfg = PhantomConfig(n_subjects=2, shape=TINY_SHAPE, seed=3)
    mapping = LabelMapping.default()
    return [prepare_eye(make_eye(cfg, s, lat), mapping, flip_os=True) for s in range(2) for lat in ("OD", "OS")]


@pytest.fixture
def tiny_config() -> AtlasConfig:
    """Small networks, small patches, few epochs, quiet CPU runtime."""
    cfg = AtlasConfig()
    cfg.TRAINING = replace(
        cfg.TRAINING, LEARNING_RATE=1e-3, TOTAL_EPOCHS=2, BATCH_SIZE=2, REG_POINTS=64, CHECKPOINT_EVERY=1, VAL_EYES=0
    )
    cfg.TRAINING.LATENT_CODE.SIZE = 8
    cfg.DISP_MODEL = replace(cfg.DISP_MODEL, NUM_LAYERS=3, HIDDEN_SIZE=16)  # the reference uses layers 0 and 1
    cfg.ATLAS_MODEL = replace(cfg.ATLAS_MODEL, HIDDEN_SIZE=32, NUM_LAYERS=2)
    cfg.DATA = replace(cfg.DATA, SUBSMPL_FACTOR=1, PATCH_SIZE=[8, 4, 8])
    cfg.TEST = replace(cfg.TEST, LEARNING_RATE=1e-2, TOTAL_EPOCHS=3)
    cfg.RUNTIME = replace(cfg.RUNTIME, ACCELERATOR="cpu", DEVICES=1, LOGGERS=["csv"], PROGRESS_BAR=False)
    return cfg


@pytest.fixture
def tiny_extent(tiny_eyes):
    return grid_extent(tiny_eyes[0].shape, tiny_eyes[0].spacing)


@pytest.fixture
def tiny_model(tiny_config, tiny_eyes):
    """A freshly initialised (seeded) GINR module for the four tiny eyes."""
    torch.manual_seed(0)
    return registration_module(tiny_config, len(tiny_eyes), LabelMapping.default().num_classes)
