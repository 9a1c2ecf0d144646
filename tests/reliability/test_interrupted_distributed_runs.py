"""A gen-INR run on two processes (Fabric starts the second): SIGKILL of one process mid-run,
then ``--resume`` on two processes continues from the last checkpoint and ends as an
uninterrupted two-process run, every code kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from entry_points import interpolation_config, start_entry, wait_for
from interruption import epoch_of, geninr_argv, load_checkpoint, log_rows, run_to_end, write_run_config

pytestmark = pytest.mark.slow

EPOCHS = 30


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_two_process_run_killed_in_one_process_resumes_with_every_code(tmp_path, data_copy) -> None:
    data = interpolation_config("geninr", data_copy, tmp_path / "runs", epochs=EPOCHS)
    data["TRAINING"].update(CHECKPOINT_EVERY=5, LATENT_LEARNING_RATE=0.01)
    config = write_run_config(tmp_path, data)
    killed_dir, reference_dir = tmp_path / "killed", tmp_path / "reference"
    last = killed_dir / "checkpoints" / "last.pt"
    process = start_entry(geninr_argv(config, killed_dir, "--devices", "2"), tmp_path / "killed.log")
    wait_for(lambda: last.is_file() and epoch_of(last) >= 5, process)
    (rank_1,) = _children(process.pid)  # the second training process, started by Fabric
    os.kill(rank_1, signal.SIGKILL)
    process.wait(timeout=120)
    assert process.returncode != 0

    killed = load_checkpoint(last)
    assert 5 <= killed["epoch"] < EPOCHS and not (killed_dir / "model.pt").exists()
    assert killed["codes"].shape == (4, 8) and bool(torch.isfinite(killed["codes"]).all())

    run_to_end(geninr_argv(config, killed_dir, "--devices", "2", "--resume"), tmp_path / "resumed.log")
    run_to_end(geninr_argv(config, reference_dir, "--devices", "2"), tmp_path / "reference.log")
    resumed_log = log_rows(killed_dir / "checkpoints" / "training_log.csv")
    reference_log = log_rows(reference_dir / "checkpoints" / "training_log.csv")
    assert [float(row["epoch"]) for row in resumed_log] == [float(e) for e in range(1, EPOCHS + 1)]
    assert [float(row["loss"]) for row in resumed_log[: killed["epoch"]]] == [row["loss"] for row in killed["history"]]
    assert [row["loss"] for row in resumed_log] == [row["loss"] for row in reference_log]
    resumed, reference = load_checkpoint(killed_dir / "model.pt"), load_checkpoint(reference_dir / "model.pt")
    assert torch.equal(resumed["codes"], reference["codes"])
    assert all(torch.equal(resumed["network"][name], value) for name, value in reference["network"].items())
