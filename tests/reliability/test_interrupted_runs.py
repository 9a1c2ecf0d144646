"""Interrupted gen-INR runs: SIGKILL then ``--resume`` ends exactly like an uninterrupted run; SIGTERM stops cleanly.

Each test starts the real entry script in its own process on the tiny phantom, interrupts
it part-way through training and inspects what is on disk.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from entry_points import interpolation_config, start_entry, wait_for
from interruption import (
    EXIT_INTERRUPTED,
    epoch_of,
    finish,
    geninr_argv,
    load_checkpoint,
    load_checkpoints,
    log_rows,
    run_to_end,
    write_run_config,
)

pytestmark = pytest.mark.slow

INTERPOLATION_EPOCHS = 60


@pytest.fixture
def geninr_config(tmp_path, data_copy) -> Path:
    data = interpolation_config("geninr", data_copy, tmp_path / "runs", epochs=INTERPOLATION_EPOCHS)
    data["TRAINING"].update(CHECKPOINT_EVERY=10, LATENT_LEARNING_RATE=0.01)
    return write_run_config(tmp_path, data)


def test_geninr_killed_and_resumed_ends_as_an_uninterrupted_run(geninr_config, tmp_path):
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    last = killed_dir / "checkpoints" / "last.pt"
    process = start_entry(geninr_argv(geninr_config, killed_dir), tmp_path / "killed.log")
    wait_for(lambda: last.is_file() and epoch_of(last) >= 10, process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    on_disk = load_checkpoints(killed_dir / "checkpoints", "*.pt")
    killed_epoch = on_disk["last.pt"]["epoch"]
    assert 10 <= killed_epoch < INTERPOLATION_EPOCHS
    assert on_disk["last.pt"]["codes"].shape == (4, 8)
    assert not (killed_dir / "model.pt").exists()

    run_to_end(geninr_argv(geninr_config, killed_dir, "--resume"), tmp_path / "resumed.log")
    run_to_end(geninr_argv(geninr_config, reference_dir), tmp_path / "reference.log")

    resumed_log = log_rows(killed_dir / "checkpoints" / "training_log.csv")
    reference_log = log_rows(reference_dir / "checkpoints" / "training_log.csv")
    assert [float(r["epoch"]) for r in resumed_log] == [float(e) for e in range(1, INTERPOLATION_EPOCHS + 1)]
    assert [r["loss"] for r in resumed_log] == [r["loss"] for r in reference_log]
    resumed, reference = load_checkpoint(killed_dir / "model.pt"), load_checkpoint(reference_dir / "model.pt")
    assert torch.equal(resumed["codes"], reference["codes"])
    assert all(torch.equal(resumed["network"][k], v) for k, v in reference["network"].items())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_geninr_sigterm_or_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path, data_copy, stop_signal):
    data = interpolation_config("geninr", data_copy, tmp_path / "runs", epochs=INTERPOLATION_EPOCHS)
    data["TRAINING"]["CHECKPOINT_EVERY"] = 10 * INTERPOLATION_EPOCHS
    run_dir = tmp_path / "run"
    log = tmp_path / "run.log"
    training_log = run_dir / "checkpoints" / "training_log.csv"
    process = start_entry(geninr_argv(write_run_config(tmp_path, data), run_dir), log)
    wait_for(lambda: training_log.is_file() and len(log_rows(training_log)) >= 3, process)
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    process.send_signal(stop_signal)
    text = finish(process, log)

    assert process.returncode == EXIT_INTERRUPTED, text
    assert "Traceback" not in text
    assert "--resume" in text
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert 3 <= state["epoch"] < INTERPOLATION_EPOCHS
    assert state["codes"].shape == (4, 8)
    assert not (run_dir / "model.pt").exists() and not (run_dir / "evaluation").exists()
