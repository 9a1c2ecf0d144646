"""Resuming joint training from its checkpoint: the epoch counter and the latent codes carry over."""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import torch

from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.trainers import checkpoint_path
from atlas_registration.training import REGISTRATION_STAGE, train_registration


class _RecordStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.epoch = trainer.current_epoch
        self.latents = pl_module.latents.weight.detach().clone()


def test_resume_continues_epochs_and_keeps_latent_codes(
    tiny_config, tiny_eyes, tiny_extent, tiny_model, tmp_path, monkeypatch
):
    classes = LabelMapping.default().num_classes
    first = train_registration(tiny_config, tiny_eyes, tiny_extent, tiny_model.atlas, classes, tmp_path, resume=False)
    assert first.current_epoch == 2
    saved = torch.load(checkpoint_path(tmp_path, REGISTRATION_STAGE), weights_only=False)
    assert saved["epoch"] == 2
    trained_latents = first.latents.weight.detach().clone()

    record = _RecordStart()
    original = L.Trainer.__init__

    def with_record(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), record]
        original(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "__init__", with_record)
    cfg = replace(tiny_config, TRAINING=replace(tiny_config.TRAINING, TOTAL_EPOCHS=4))
    second = train_registration(cfg, tiny_eyes, tiny_extent, tiny_model.atlas, classes, tmp_path, resume=True)
    assert record.epoch == 2
    assert torch.equal(record.latents, trained_latents)
    assert second.current_epoch == 4
    assert not torch.equal(second.latents.weight.detach(), trained_latents)
