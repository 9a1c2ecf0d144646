"""Population training: loss goes down, checkpoints resume exactly, a stop request checkpoints."""

from __future__ import annotations

import signal
from pathlib import Path

import torch

from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import LAST_CHECKPOINT, NetworkTrainer
from anisotropic_interpolation.checkpoints import load_checkpoint


def _trainer(config, eyes, folder: Path | None) -> NetworkTrainer:
    sparse = [eye.subsample(4) for eye in eyes]
    data = SparseVolumes.from_eyes(sparse, use_labels=True, use_slo=True, slice_scale=1.0, device="cpu")
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    return NetworkTrainer(network, data, config, folder)


def test_training_lowers_the_loss(make_config, tiny_eyes) -> None:
    outcome = _trainer(make_config(TRAINING={"TOTAL_EPOCHS": 6}), tiny_eyes, None).train()
    assert outcome.history[-1]["loss"] < outcome.history[0]["loss"]


def test_resumed_training_ends_where_an_uninterrupted_run_ends(make_config, tiny_eyes, tmp_path: Path) -> None:
    straight = _trainer(make_config(), tiny_eyes, tmp_path / "straight")
    straight.train()
    first = _trainer(make_config(TRAINING={"TOTAL_EPOCHS": 2}), tiny_eyes, tmp_path / "resumed")
    first.train()
    resumed = _trainer(make_config(), tiny_eyes, tmp_path / "resumed")
    outcome = resumed.train(resume=True)
    assert outcome.epochs_done == 4
    last_straight = load_checkpoint(tmp_path / "straight" / LAST_CHECKPOINT)
    last_resumed = load_checkpoint(tmp_path / "resumed" / LAST_CHECKPOINT)
    assert torch.equal(last_straight["codes"], last_resumed["codes"])
    for name, value in last_straight["network"].items():
        assert torch.equal(value, last_resumed["network"][name]), name


def test_a_stop_request_writes_a_checkpoint_and_ends_cleanly(make_config, tiny_eyes, tmp_path: Path) -> None:
    trainer = _trainer(make_config(), tiny_eyes, tmp_path)
    step = trainer.step
    calls = []

    def step_then_signal() -> torch.Tensor:
        calls.append(1)
        if len(calls) == 7:  # part-way through epoch 2
            signal.raise_signal(signal.SIGTERM)
        return step()

    trainer.step = step_then_signal
    outcome = trainer.train()
    assert outcome.interrupted and outcome.epochs_done == 1
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT)["epoch"] == 1


def test_best_and_last_checkpoints_and_log_are_written(make_config, tiny_eyes, tmp_path: Path) -> None:
    _trainer(make_config(), tiny_eyes, tmp_path).train()
    assert {p.name for p in tmp_path.iterdir()} >= {"best.pt", "last.pt", "training_log.csv"}
    assert len((tmp_path / "training_log.csv").read_text().splitlines()) == 3  # header + 2 summaries
