"""The GINR LightningModule: a few CPU steps lower the loss; latent-only inference trains only the code."""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.datasets.patches import StridedPatchDataset
from atlas_registration.fitting import fit_eye, latent_fit
from atlas_registration.losses import registration_loss
from atlas_registration.training import registration_module


def _fixed_batch(cfg, eyes, extent):
    data = StridedPatchDataset(eyes, extent, cfg.DATA.PATCH_SIZE)
    return next(iter(DataLoader(data, batch_size=len(eyes))))


def _loss(model, batch):
    latent = model.latents(batch["eye"])
    with torch.no_grad():
        return float(
            registration_loss(model.atlas, lambda x: model.displacement(x, latent), batch, model.weights)["loss"]
        )


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])  # bf16-mixed: the autocast path of bf16 GPUs
def test_training_steps_lower_the_loss(tiny_config, tiny_eyes, tiny_extent, precision):
    # the reference's networks (U(+-0.001) deformation weights, atlas at 0.1 LR) move slowly: LR 1e-2
    tiny_config.TRAINING = replace(tiny_config.TRAINING, LEARNING_RATE=1e-2)
    torch.manual_seed(0)
    tiny_model = registration_module(tiny_config, len(tiny_eyes), LabelMapping.default().num_classes)
    batch = _fixed_batch(tiny_config, tiny_eyes, tiny_extent)
    before = _loss(tiny_model, batch)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=30,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        precision=precision,
    )
    trainer.fit(tiny_model, DataLoader([batch] * 30, batch_size=None))
    assert _loss(tiny_model, batch) < 0.7 * before


def test_latent_only_inference_changes_only_the_latent_code(tiny_config, tiny_eyes, tiny_extent, tiny_model):
    network = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    fit = latent_fit(tiny_config, tiny_model.atlas, tiny_model.deformation)
    start = fit.latent.detach().clone()
    fit_eye(tiny_config, fit, tiny_eyes[1], tiny_extent, epochs=3)
    assert not torch.equal(fit.latent.detach(), start)
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, network[key]), key
