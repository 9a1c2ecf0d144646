"""Population training: loss goes down, checkpoints resume exactly, a stop request checkpoints."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import (
    LAST_CHECKPOINT, NetworkTrainer, StepPlan, make_step, objective_from_config,
)
from anisotropic_interpolation.checkpoints import load_checkpoint
from tiny_configs import tiny_trainer


def _trainer(config, eyes, folder: Path | None) -> NetworkTrainer:
    return tiny_trainer(config, eyes, checkpoint_dir=folder)


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


def test_step_plan_splits_a_batch_into_equal_micro_batches() -> None:
    data = SparseVolumes(torch.zeros(2, 64, 64, 4), None, None, torch.zeros(2, 4))
    plan = StepPlan.for_data(data, 65536, 16, None, micro_batch_points=8192)
    assert (plan.micro_batches, plan.patches, plan.points) == (8, 32, 65536)
    uneven = StepPlan.for_data(data, 100 * 256, 16, None, micro_batch_points=8192)
    assert (uneven.micro_batches, uneven.patches) == (4, 25)
    whole = StepPlan.for_data(data, 65536, 16, None, micro_batch_points=None)
    assert (whole.micro_batches, whole.patches) == (1, 256)
    assert whole.steps_per_epoch == StepPlan.for_data(data, 65536, 16, None, 8192).steps_per_epoch == 1


def test_micro_batched_step_applies_the_gradient_of_the_whole_batch(make_config) -> None:
    """One B-scan of 8 x 8 and 8 x 8 patches: every patch is the same, so a step of four patches
    in one batch and one of four patches in four micro-batches must move the weights alike."""
    config = make_config(TRAINING={"LOSS_RECON": "Combi", "PATCH_SIZE": 8, "LATENT_CODE": {"SIZE": 4,
                                                                                         "REG_WEIGHT": 0.1}},
                         MODEL={"ACTIVATION": "WIRE", "SKIP_CONNECTION": True, "INPUT_COORD_TO_ALL_LAYERS": True})
    generator = torch.Generator().manual_seed(0)
    data = SparseVolumes(torch.rand(1, 8, 8, 1, generator=generator), torch.randint(5, (1, 8, 8, 1), dtype=torch.uint8),
                         torch.rand(1, 8, 1, generator=generator), torch.zeros(1, 1))
    moved = []
    for micro_batch_points in (None, 64):
        torch.manual_seed(0)
        network = build_network(config, NetworkInputs(use_slo=True, latent_size=4, num_classes=5))
        codes = torch.nn.Parameter(torch.full((1, 4), 0.5))
        before = [p.detach().clone() for p in [*network.parameters(), codes]]
        optimizer = torch.optim.SGD([*network.parameters(), codes], lr=1.0)
        plan = StepPlan.for_data(data, 256, 8, None, micro_batch_points)
        objective = objective_from_config(network, config, code_weight=0.1)
        terms = make_step(objective, data, codes, optimizer, None, plan, torch.Generator(), False)()
        moved.append(([a - b for a, b in zip([*network.parameters(), codes], before)], terms))
    assert [plan.micro_batches for plan in (StepPlan.for_data(data, 256, 8, None, m) for m in (None, 64))] == [1, 4]
    (whole, whole_terms), (split, split_terms) = moved
    assert torch.allclose(whole_terms, split_terms, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(whole, split))
    assert any(a.abs().max() > 1e-4 for a in whole)


@pytest.mark.slow
def test_compiled_micro_batched_steps_match_eager_steps(make_config, tiny_eyes) -> None:
    """SETTINGS.COMPILE: the compiled micro-batch forward/backward and Adam step train like eager."""
    states = []
    for compiled in (False, True):
        config = make_config(SETTINGS={"COMPILE": compiled, "MICRO_BATCH_POINTS": 256},
                             TRAINING={"BATCH_POINTS": 512, "LOSS_RECON": "Combi", "LR_SCHEDULE": "cosine"},
                             MODEL={"ACTIVATION": "WIRE"})
        trainer = _trainer(config, tiny_eyes, None)
        assert trainer.plan.micro_batches == 2
        losses = [trainer.step() for _ in range(3)]
        states.append((trainer.network.state_dict(), trainer.codes.detach().clone(), torch.stack(losses)))
    (eager, eager_codes, eager_losses), (compiled, compiled_codes, compiled_losses) = states
    assert torch.allclose(eager_losses, compiled_losses, atol=1e-4)
    assert torch.allclose(eager_codes, compiled_codes, atol=1e-5)
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-4) for k in eager)
