"""Validation on held-out input B-scans (TRAINING/TEST.HOLDOUT_BSCANS) and stopping on divergence."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_configs import tiny_config, tiny_trainer

from anisotropic_interpolation import fitting, training
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.model import NetworkInputs, build_network
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    TRAINING_LOG,
    BatchSource,
    NetworkTrainer,
    holdout_indices,
)
from retina_data.checkpoints import load_checkpoint
from retina_data.errors import ConfigError, TrainingDivergedError
from retina_data.folds import FOLDS_FILE, write_folds_for_tree
from retina_data.phantom import PhantomConfig, write_phantom

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("inputs", "count", "held"),
    [
        (16, 3, [4, 8, 11]),  # linspace(0, 15, 5)[1:-1] = 3.75, 7.5, 11.25
        (4, 1, [2]),  # 1.5 rounds half up
        (5, 2, [1, 3]),
        (16, 0, []),
    ],
)
def test_held_out_bscans_are_spread_strictly_between_the_first_and_last_input(inputs, count, held) -> None:
    assert holdout_indices(inputs, count, "TRAINING.HOLDOUT_BSCANS") == held


def test_holding_out_more_than_every_other_input_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"TEST.HOLDOUT_BSCANS = 8: expected at most 7 for eyes of 16 input"):
        holdout_indices(16, 8, "TEST.HOLDOUT_BSCANS")


def _recording(monkeypatch) -> list:
    """Every batch any BatchSource hands to a step, recorded."""
    batches = []
    original = BatchSource.next

    def next_batches(self):
        drawn = original(self)
        batches.extend(drawn)
        return drawn

    monkeypatch.setattr(BatchSource, "next", next_batches)
    return batches


@pytest.mark.parametrize("sampling", ["bscan", "patches"])
def test_the_held_out_bscans_are_never_in_the_training_steps(make_config, tiny_eyes, monkeypatch, sampling) -> None:
    config = make_config(TRAINING={"HOLDOUT_BSCANS": 1, "SAMPLING": sampling, "PATCH_SIZE": 4, "TOTAL_EPOCHS": 2})
    trainer = tiny_trainer(config, tiny_eyes)
    everything = trainer.all_data  # 4 input B-scans per eye; the third (index 2) is held out
    assert (trainer.data.num_slices, trainer.heldout.num_slices) == (3, 1)
    assert torch.equal(trainer.heldout.intensity[..., 0], everything.intensity[..., 2])
    assert torch.equal(trainer.heldout.slice_coords[:, 0], everything.slice_coords[:, 2])
    assert torch.equal(trainer.data.slice_coords, everything.slice_coords[:, [0, 1, 3]])  # coordinates unchanged
    batches = _recording(monkeypatch)
    trainer.train()
    held_z = set(everything.slice_coords[:, 2].tolist())
    seen_z = {z for batch in batches for z in batch.coords[:, 2].tolist()}
    assert batches and not seen_z & held_z
    assert seen_z == set(everything.slice_coords[:, [0, 1, 3]].flatten().tolist())


def _scripted_heldout(monkeypatch, module, losses: list[list[float]]) -> None:
    """``heldout_losses`` of ``module`` returns the rows of ``losses`` ([epoch][eye]) in turn."""
    rows = iter(losses)
    monkeypatch.setattr(module, "heldout_losses", lambda *args: torch.tensor(next(rows)))


def test_training_keeps_the_epoch_of_the_lowest_held_out_loss_and_stops_on_it(
    make_config, tiny_eyes, monkeypatch, tmp_path: Path
) -> None:
    """The training loss falls every epoch, the scripted held-out loss is lowest after epoch 4:
    epoch 4 is kept (the training loss would keep the last), and early stopping (patience 2,
    from the first epoch) stops after epoch 6 (the training loss would run all 8)."""
    config = make_config(
        TRAINING={
            "HOLDOUT_BSCANS": 1,
            "TOTAL_EPOCHS": 8,
            "EPOCHS_TIL_SUMMARY": 1,
            "EARLY_STOPPING_PATIENCE": 2,
            "EARLY_STOPPING_MIN_DELTA": 0.0,
            "EARLY_STOPPING_START_EPOCH": 0,
            "CHECKPOINT_EVERY": 1,
        }
    )
    _scripted_heldout(monkeypatch, training, [[5.0], [3.0], [4.0], [2.5], [2.6], [2.7], [1.0], [1.0]])
    trainer = tiny_trainer(config, tiny_eyes, checkpoint_dir=tmp_path)
    outcome = trainer.train()
    assert outcome.stopped_early and outcome.epochs_done == 6 and outcome.chosen_epoch == 4
    assert [row["heldout"] for row in outcome.history] == pytest.approx([5.0, 3.0, 4.0, 2.5, 2.6, 2.7])
    assert outcome.history[-1]["loss"] < outcome.history[3]["loss"]  # the training loss still fell
    assert load_checkpoint(tmp_path / BEST_CHECKPOINT)["epoch"] == 4
    assert (tmp_path / TRAINING_LOG).read_text().splitlines()[0].split(",")[:5] == [
        "epoch",
        "loss",
        "recon",
        "seg",
        "heldout",
    ]
    epoch_four = load_checkpoint(tmp_path / BEST_CHECKPOINT)["network"]
    assert all(torch.equal(value, epoch_four[name]) for name, value in trainer.network.state_dict().items())


def test_refit_trains_from_the_same_start_on_all_inputs_for_the_chosen_epochs(
    make_config, tiny_eyes, monkeypatch, tmp_path: Path
) -> None:
    config = make_config(
        TRAINING={"HOLDOUT_BSCANS": 1, "HOLDOUT_REFIT": True, "TOTAL_EPOCHS": 5, "EARLY_STOPPING_PATIENCE": 0}
    )
    _scripted_heldout(monkeypatch, training, [[3.0], [2.0], [1.0], [4.0], [5.0]])
    refitted = tiny_trainer(config, tiny_eyes, checkpoint_dir=tmp_path)
    outcome = refitted.train()
    assert outcome.chosen_epoch == 3 and outcome.refitted
    assert load_checkpoint(tmp_path / "refit" / LAST_CHECKPOINT)["epoch"] == 3
    plain = dataclasses.replace(config, TRAINING=dataclasses.replace(config.TRAINING, HOLDOUT_BSCANS=0))
    data = SparseVolumes.from_eyes(
        [eye.subsample(4) for eye in tiny_eyes], use_labels=True, use_slo=True, slice_scale=1.0, device=CPU
    )
    torch.manual_seed(0)  # the network tiny_trainer starts from; the codes follow TRAINING.SEED
    network = build_network(plain, NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    straight = NetworkTrainer(network, data, plain, None, progress=False, epochs=3, keep_last=True)
    assert straight.train().epochs_done == 3 and straight.data.num_slices == 4
    final = straight.network.state_dict()
    assert all(torch.allclose(value, final[name]) for name, value in refitted.network.state_dict().items())
    assert torch.allclose(refitted.codes, straight.codes)
    kept = load_checkpoint(tmp_path / BEST_CHECKPOINT)
    assert all(torch.equal(value, kept["network"][name]) for name, value in refitted.network.state_dict().items())


@pytest.fixture(scope="module")
def population(tiny_eyes):
    """A tiny population network (its training is not the point: the latent fit is)."""
    torch.manual_seed(0)
    config = tiny_config(TEST={"TOTAL_EPOCHS": 6, "STEPS_PER_EPOCH": None, "LEARNING_RATE": 0.5})
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=8, num_classes=13))
    return network, config


def _fit(network, config, eyes, **test):
    changed = dataclasses.replace(config, TEST=dataclasses.replace(config.TEST, **test))
    torch.manual_seed(0)
    fitter = LatentFitter(network, changed, CPU)
    return fitter.fit(eyes, progress=False), fitter


def test_latent_fit_holds_out_bscans_and_keeps_each_eyes_code_of_its_lowest_held_out_loss(
    population, tiny_eyes, monkeypatch
) -> None:
    network, config = population
    eyes = [eye.subsample(4) for eye in tiny_eyes[:2]]
    batches = _recording(monkeypatch)
    _scripted_heldout(monkeypatch, fitting, [[5.0, 5.0], [1.0, 4.0], [2.0, 3.0], [3.0, 0.5], [4.0, 0.6], [6.0, 0.7]])
    codes, fitter = _fit(network, config, eyes, HOLDOUT_BSCANS=1)
    full = SparseVolumes.from_eyes(eyes, use_labels=False, use_slo=True, slice_scale=1.0, device=CPU)
    held_z = set(full.slice_coords[:, 2].tolist())
    assert len(batches) == 6 * 3 and not {z for b in batches for z in b.coords[:, 2].tolist()} & held_z
    assert fitter.heldout_losses[0].shape == (6, 2)
    monkeypatch.undo()
    for eye, epoch in enumerate([2, 4]):  # the scripted lowest held-out losses
        stopped, _ = _fit(network, config, eyes, HOLDOUT_BSCANS=1, KEEP="last", TOTAL_EPOCHS=epoch)
        assert torch.equal(codes[eye], stopped[eye])


def test_latent_refit_fits_all_inputs_for_each_eyes_chosen_epochs(population, tiny_eyes, monkeypatch) -> None:
    """Each eye's code follows its own fit (Adam is elementwise, the eyes' B-scan losses are summed),
    so the refit of both eyes equals, eye by eye, a plain fit on all inputs for that eye's epochs."""
    network, config = population
    eyes = [eye.subsample(4) for eye in tiny_eyes[:2]]
    _scripted_heldout(monkeypatch, fitting, [[5.0, 5.0], [1.0, 4.0], [2.0, 3.0], [3.0, 0.5], [4.0, 0.6], [6.0, 0.7]])
    batches = _recording(monkeypatch)
    codes, fitter = _fit(network, config, eyes, HOLDOUT_BSCANS=1, HOLDOUT_REFIT=True)
    assert fitter.chosen_epochs[0].tolist() == [2, 4]
    assert len(batches) == 6 * 3 + 4 * 4  # the refit: 4 epochs of all 4 input B-scans
    monkeypatch.undo()
    for eye, epoch in enumerate([2, 4]):
        plain, _ = _fit(network, config, eyes, KEEP="last", TOTAL_EPOCHS=epoch)
        assert torch.allclose(codes[eye], plain[eye], atol=1e-6)


def test_a_diverging_training_stops_naming_epoch_step_and_loss_terms_and_keeps_finite_checkpoints(
    make_config, tiny_eyes, tmp_path: Path
) -> None:
    """Two good epochs (checkpointed), then a learning rate of 1e30: the third epoch diverges."""
    trainer = tiny_trainer(make_config(TRAINING={"CHECKPOINT_EVERY": 1}), tiny_eyes, checkpoint_dir=tmp_path)
    step = trainer.step
    calls = []

    def step_then_explode() -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2 * trainer.plan.steps_per_epoch + 1:
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1e30
        return step()

    trainer.step = step_then_explode
    with pytest.raises(
        TrainingDivergedError,
        match=r"training diverged in epoch 3, step \d of 5: non-finite "
        r"loss \(loss (nan|inf), recon (nan|inf), seg.*TRAINING.LEARNING_RATE",
    ):
        trainer.train()
    last = load_checkpoint(tmp_path / LAST_CHECKPOINT)
    assert last["epoch"] == 2
    best = load_checkpoint(tmp_path / BEST_CHECKPOINT)
    for state in (last["network"], best["network"], last["best"]["network"]):
        assert all(torch.isfinite(value).all() for value in state.values())
    network = build_network(trainer.config, trainer.network.inputs)
    network.load_state_dict(best["network"])  # loadable into a fresh network


def test_a_diverging_latent_fit_stops_with_a_hint_at_the_test_learning_rate(population, tiny_eyes) -> None:
    network, config = population
    with pytest.raises(
        TrainingDivergedError,
        match=r"latent fit of sub001_OD diverged in epoch 1.*TEST.LEARNING_RATE "
        r"\(now 1e\+30\)",
    ):
        _fit(network, config, [tiny_eyes[0].subsample(4)], LEARNING_RATE=1e30)


def test_a_run_with_a_learning_rate_of_1e30_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "phantom"
    write_phantom(data_dir, PhantomConfig(n_subjects=3, shape=(32, 16, 16)), progress=False)
    write_folds_for_tree(data_dir, data_dir / FOLDS_FILE, k=3)
    out = tmp_path / "run"
    overrides = [
        f"SETTINGS.IMG_DIR={data_dir}",
        "SETTINGS.FOLD=0",
        "PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR=4",
        "TRAINING.TOTAL_EPOCHS=3",
        "TRAINING.LEARNING_RATE=1e30",
        "TRAINING.CHECKPOINT_EVERY=1",
        "EVALUATION.FIGURES=false",
    ]
    command = [
        sys.executable,
        "-m",
        "anisotropic_interpolation.train_test_singleinr",
        str(ROOT / "configs" / "interpolation" / "demo_singleinr.yaml"),
        "--gpu",
        "-1",
        "--quiet",
        "--output",
        str(out),
        *[item for override in overrides for item in ("--set", override)],
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "diverged in epoch 1" in lines[0] and "TRAINING.LEARNING_RATE (now 1e+30)" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (out / "evaluation" / "summary.md").exists()
    (eye_dir,) = list((out / "single_inr").iterdir())
    best = load_checkpoint(eye_dir / BEST_CHECKPOINT)
    assert all(torch.isfinite(value).all() for value in best["network"].values())
