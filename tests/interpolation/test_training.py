"""Population training: loss goes down, checkpoints resume exactly, a stop request checkpoints."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from tiny_configs import tiny_trainer

from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import (
    LAST_CHECKPOINT,
    BatchSource,
    EarlyStopping,
    NetworkTrainer,
    StepPlan,
    make_step,
    objective_from_config,
)
from retina_data.checkpoints import load_checkpoint


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
    assert (plan.micro_batches, plan.images, plan.points) == (8, 32, 65536)
    uneven = StepPlan.for_data(data, 100 * 256, 16, None, micro_batch_points=8192)
    assert (uneven.micro_batches, uneven.images) == (4, 25)
    whole = StepPlan.for_data(data, 65536, 16, None, micro_batch_points=None)
    assert (whole.micro_batches, whole.images) == (1, 256)
    assert whole.steps_per_epoch == StepPlan.for_data(data, 65536, 16, None, 8192).steps_per_epoch == 1


def _moved_weights(config, data, plan: StepPlan, code_weight_eyes: int = 1):
    """Weights moved by one SGD step (lr 1) of a fresh seeded network on ``plan``, and the loss terms."""
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=4, num_classes=5))
    codes = torch.nn.Parameter(torch.linspace(-0.5, 0.5, 4 * code_weight_eyes).view(code_weight_eyes, 4))
    before = [p.detach().clone() for p in [*network.parameters(), codes]]
    optimizer = torch.optim.SGD([*network.parameters(), codes], lr=1.0)
    source = BatchSource(data, plan, torch.Generator().manual_seed(0))
    terms = make_step(objective_from_config(network, config), source, codes, optimizer, None, False)()
    return [a - b for a, b in zip([*network.parameters(), codes], before)], terms


def test_micro_batched_step_applies_the_gradient_of_the_whole_batch(make_config) -> None:
    """One B-scan of 8 x 8 and 8 x 8 patches: every patch is the same, so a step of four patches
    in one batch and one of four patches in four micro-batches must move the weights alike."""
    config = make_config(
        TRAINING={
            "LOSS_RECON": "Combi",
            "PATCH_SIZE": 8,
            "SAMPLING": "patches",
            "LATENT_CODE": {"SIZE": 4, "REG_WEIGHT": 0.1},
        },
        MODEL={"ACTIVATION": "WIRE", "SKIP_CONNECTION": True, "INPUT_COORD_TO_ALL_LAYERS": True},
    )
    generator = torch.Generator().manual_seed(0)
    data = SparseVolumes(
        torch.rand(1, 8, 8, 1, generator=generator),
        torch.randint(5, (1, 8, 8, 1), dtype=torch.uint8),
        torch.rand(1, 8, 1, generator=generator),
        torch.zeros(1, 1),
    )
    plans = [StepPlan.for_data(data, 256, 8, None, m) for m in (None, 64)]
    assert [plan.micro_batches for plan in plans] == [1, 4]
    (whole, whole_terms), (split, split_terms) = [_moved_weights(config, data, plan) for plan in plans]
    assert torch.allclose(whole_terms, split_terms, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(whole, split))
    assert any(a.abs().max() > 1e-4 for a in whole)


def test_a_whole_bscan_in_micro_batches_gets_the_update_of_the_whole_bscan(make_config) -> None:
    """SAMPLING: bscan with Combi: SSIM needs the whole B-scan, yet a 12 x 10 B-scan evaluated in
    chunks of 32 points (two passes) must move every weight and the code as one pass does."""
    config = make_config(
        TRAINING={"LOSS_RECON": "Combi", "SAMPLING": "bscan", "LATENT_CODE": {"SIZE": 4}}, MODEL={"ACTIVATION": "WIRE"}
    )
    generator = torch.Generator().manual_seed(1)
    data = SparseVolumes(
        torch.rand(1, 12, 10, 1, generator=generator),
        torch.randint(5, (1, 12, 10, 1), dtype=torch.uint8),
        torch.rand(1, 10, 1, generator=generator),
        torch.zeros(1, 1),
    )
    plans = [StepPlan.for_bscans(data, False, None, m) for m in (None, 32)]
    assert [(plan.micro_batches, plan.points) for plan in plans] == [(1, 120), (4, 120)]
    (whole, whole_terms), (split, split_terms) = [_moved_weights(config, data, plan) for plan in plans]
    assert torch.allclose(whole_terms, split_terms, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(whole, split))
    assert whole[-1].abs().max() > 1e-4  # the code moved too


def test_a_bscan_epoch_visits_every_eye_and_bscan_once(tiny_eyes) -> None:
    data = SparseVolumes.from_eyes(
        [eye.subsample(4) for eye in tiny_eyes[:3]], use_labels=False, use_slo=False, slice_scale=1.0, device="cpu"
    )
    plan = StepPlan.for_bscans(data, False, None)
    assert plan.steps_per_epoch == 3 * 4
    source = BatchSource(data, plan, torch.Generator().manual_seed(0))
    for _ in range(2):
        source.start_epoch()
        seen = []
        for _ in range(plan.steps_per_epoch):
            (batch,) = source.next()
            assert batch.intensity.shape == (1, 32, 16)
            eye = int(batch.eye[0])
            bscan = int(torch.nonzero(data.slice_coords[eye] == batch.coords[0, 2])[0, 0])
            assert torch.equal(batch.intensity[0], data.intensity[eye, :, :, bscan])
            seen.append((eye, bscan))
        assert sorted(seen) == [(e, s) for e in range(3) for s in range(4)]


def test_the_learning_rate_after_k_epochs_is_the_rate_times_gamma_to_the_k(make_config, tiny_eyes) -> None:
    trainer = _trainer(make_config(TRAINING={"TOTAL_EPOCHS": 3, "EPOCHS_TIL_SUMMARY": 1}), tiny_eyes, None)
    rates = []
    step = trainer.step

    def recording_step() -> torch.Tensor:
        rates.append(float(trainer.optimizer.param_groups[0]["lr"]))
        return step()

    trainer.step = recording_step
    trainer.train()
    per_epoch = trainer.plan.steps_per_epoch
    assert rates == pytest.approx([0.003 * 0.99 ** (i // per_epoch) for i in range(3 * per_epoch)])
    assert [row["lr"] for row in trainer.history] == pytest.approx([0.003 * 0.99**k for k in (1, 2, 3)])
    assert all(group["lr"] == pytest.approx(0.003 * 0.99**3) for group in trainer.optimizer.param_groups)


def test_early_stopping_counts_only_epochs_from_the_start_epoch_and_improvements_above_min_delta() -> None:
    stopping = EarlyStopping(patience=3, min_delta=0.1, start_epoch=4)
    losses = [5.0, 5.0, 5.0, 5.0, 5.0, 4.95, 4.85, 4.0, 3.95, 3.95, 3.95, 1.0]
    stopped_at = next(index for index, loss in enumerate(losses) if stopping.update(index, loss))
    # 0: best 5.0; 1-3 never count; 4 and 5 (0.05 better) are stale; 6 (4.85) and 7 (4.0) improve;
    # 8, 9, 10 improve by less than 0.1: the third of them stops the run.
    assert stopped_at == 10
    assert (stopping.best, stopping.stale) == (4.0, 3)


def test_training_stops_early_on_a_scripted_loss_sequence_and_keeps_the_best_epoch(
    make_config, tiny_eyes, tmp_path: Path
) -> None:
    config = make_config(
        TRAINING={
            "TOTAL_EPOCHS": 50,
            "EPOCHS_TIL_SUMMARY": 1,
            "STEPS_PER_EPOCH": 1,
            "EARLY_STOPPING_PATIENCE": 3,
            "EARLY_STOPPING_MIN_DELTA": 0.01,
            "EARLY_STOPPING_START_EPOCH": 5,
        }
    )
    trainer = _trainer(config, tiny_eyes, tmp_path)
    losses = iter([9.0, 8.0, 7.0, 8.0, 8.0, 8.0, 6.0, 6.005, 6.0, 5.999, 5.0, 4.0])
    step = trainer.step

    def scripted_step() -> torch.Tensor:
        step()
        return torch.tensor([next(losses), 0.0, 0.0])

    trainer.step = scripted_step
    outcome = trainer.train()
    # epochs 3-5 (0-based) are not worse than 7.0 by the rule but start counting only at 5: one stale;
    # 6 improves to 6.0; 7, 8, 9 improve by less than 0.01: the third stale epoch stops the run.
    assert outcome.stopped_early and outcome.epochs_done == 10
    assert trainer.best_loss == pytest.approx(5.999) and trainer.best_state["epoch"] == 10
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 10
    assert load_checkpoint(tmp_path / LAST_CHECKPOINT)["early_stopping"]["stale"] == 3


@pytest.mark.slow
def test_compiled_micro_batched_steps_match_eager_steps(make_config, tiny_eyes) -> None:
    """SETTINGS.COMPILE: the compiled micro-batch forward/backward and Adam step train like eager."""
    states = []
    for compiled in (False, True):
        config = make_config(
            SETTINGS={"COMPILE": compiled, "MICRO_BATCH_POINTS": 256},
            TRAINING={"BATCH_POINTS": 512, "LOSS_RECON": "Combi", "LR_SCHEDULE": "cosine", "SAMPLING": "patches"},
            MODEL={"ACTIVATION": "WIRE"},
        )
        trainer = _trainer(config, tiny_eyes, None)
        assert trainer.plan.micro_batches == 2
        losses = [trainer.step() for _ in range(3)]
        states.append((trainer.network.state_dict(), trainer.codes.detach().clone(), torch.stack(losses)))
    (eager, eager_codes, eager_losses), (compiled, compiled_codes, compiled_losses) = states
    assert torch.allclose(eager_losses, compiled_losses, atol=1e-4)
    assert torch.allclose(eager_codes, compiled_codes, atol=1e-5)
    assert all(torch.allclose(eager[k], compiled[k], atol=1e-4) for k in eager)
