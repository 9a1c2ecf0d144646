"""Checkpoints survive a stopped run: written atomically and on an interrupting exception."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from atlas_registration.datasets.patches import StridedPatchDataset
from atlas_registration.trainers import RandomStateCheckpoint, build_trainer, checkpoint_path


class _StopAtEpoch(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("stopped")


def test_interrupted_training_leaves_a_checkpoint(tiny_config, tiny_eyes, tiny_extent, tiny_model, tmp_path):
    trainer = build_trainer(tiny_config.RUNTIME, tmp_path, "stage", max_epochs=5, checkpoint_every=100)
    trainer.callbacks.append(_StopAtEpoch())
    data = StridedPatchDataset(tiny_eyes, tiny_extent, tiny_config.DATA.PATCH_SIZE)
    with pytest.raises(RuntimeError, match="stopped"):
        trainer.fit(tiny_model, DataLoader(data, batch_size=2))
    saved = torch.load(checkpoint_path(tmp_path, "stage"), weights_only=False)
    assert saved["epoch"] == 1
    torch.testing.assert_close(saved["state_dict"]["latents.weight"], tiny_model.latents.weight.detach())
    assert not [p for p in (tmp_path / "checkpoints" / "stage").iterdir() if ".tmp" in p.name]


def test_checkpoint_stores_random_states_and_resume_restores_them():
    keeper = RandomStateCheckpoint()
    checkpoint: dict = {}
    torch.manual_seed(7)
    np.random.seed(7)
    keeper.on_save_checkpoint(None, None, checkpoint)
    expected_torch, expected_numpy = torch.rand(4), np.random.rand(4)
    torch.manual_seed(99)
    np.random.seed(99)
    keeper.on_load_checkpoint(None, None, checkpoint)
    assert torch.equal(torch.rand(4), expected_torch)
    assert np.array_equal(np.random.rand(4), expected_numpy)
