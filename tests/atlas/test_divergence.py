"""Numerical health of joint training: a non-finite loss stops the run, and no checkpoint with
non-finite weights is ever written (``last.ckpt`` stays the last finite one)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.trainers import check_finite_loss, checkpoint_path
from atlas_registration.training import REGISTRATION_STAGE, train_registration
from retina_data.errors import TrainingDivergedError


class _Poison(L.Callback):
    """Sets the deformation network's first weight to NaN in ``epoch`` (0-based): before its first
    step, or (``at_end``) after its last step."""

    def __init__(self, epoch: int, at_end: bool) -> None:
        self.epoch, self.at_end = epoch, at_end

    def _poison(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                next(pl_module.deformation.parameters()).fill_(float("nan"))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.at_end and batch_idx == 0:
            self._poison(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.at_end and batch_idx == trainer.num_training_batches - 1:
            self._poison(trainer, pl_module)


@pytest.fixture
def poisoned_training(tiny_config, tiny_eyes, tiny_extent, tiny_model, tmp_path, monkeypatch):
    """``run(at_end)``: train 4 epochs (a checkpoint after each) with the weights poisoned in epoch 3."""
    original = L.Trainer.__init__

    def run(at_end: bool):
        def with_poison(self, *args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), _Poison(2, at_end)]
            original(self, *args, **kwargs)

        monkeypatch.setattr(L.Trainer, "__init__", with_poison)
        tiny_config.TRAINING.TOTAL_EPOCHS = 4
        return train_registration(
            tiny_config,
            tiny_eyes,
            tiny_extent,
            tiny_model.atlas,
            LabelMapping.default().num_classes,
            tmp_path,
            resume=False,
        )

    return run


def _finite(path) -> tuple[int, bool]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["epoch"], all(bool(v.isfinite().all()) for v in state["state_dict"].values() if v.is_floating_point())


def test_non_finite_weights_stop_training_before_the_step_naming_it_and_keep_the_last_finite_checkpoint(
    poisoned_training, tmp_path
):
    """Before: the reference's BCE raised a RuntimeError traceback on the NaN probabilities, and the
    interrupt handler wrote the NaN weights into last.ckpt."""
    last = checkpoint_path(tmp_path, REGISTRATION_STAGE)
    with pytest.raises(
        TrainingDivergedError,
        match=r"GINRAtlasRegistration diverged in epoch 3, step 1 \(global "
        r"step 5\): non-finite weights deformation\..* after the previous "
        r"update; try a lower TRAINING.LEARNING_RATE \(now 0.001\); "
        ".*last.ckpt is the last finite checkpoint",
    ):
        poisoned_training(at_end=False)
    assert _finite(last) == (1, True)  # saved at the end of epoch index 1: a resume starts epoch 3


def test_a_non_finite_loss_names_the_step_and_every_term(tiny_model):
    """The loss check itself: a NaN term stops with all terms shown."""
    terms = {"mse": torch.tensor(0.25), "bce": torch.tensor(float("nan")), "loss": torch.tensor(float("nan"))}
    with pytest.raises(
        TrainingDivergedError,
        match=r"GINRAtlasRegistration diverged in epoch 1, step 4 \(global "
        r"step 1\): non-finite loss \(mse 0.25, bce nan, loss nan\); "
        r"try a lower TRAINING.LEARNING_RATE \(now 0.5\)",
    ):
        check_finite_loss(tiny_model, terms, 3, "TRAINING.LEARNING_RATE", 0.5)
    check_finite_loss(tiny_model, {"mse": torch.tensor(0.25), "loss": torch.tensor(0.25)}, 3, "X", 1.0)


def test_non_finite_weights_are_never_written_and_the_previous_last_checkpoint_stays(poisoned_training, tmp_path):
    """Weights poisoned after the last step of epoch 3 (finite losses): the epoch's checkpoint is refused."""
    last = checkpoint_path(tmp_path, REGISTRATION_STAGE)
    with pytest.raises(
        TrainingDivergedError,
        match=r"epoch=00002.ckpt: not written: the weights deformation\..* "
        r"are not finite; .*last.ckpt is the last finite checkpoint",
    ):
        poisoned_training(at_end=True)
    assert _finite(last) == (1, True)  # saved at the end of epoch index 1: a resume starts epoch 3
    assert not any(path.name.startswith(".") for path in last.parent.iterdir()), "a temporary file was left"
