"""Interrupted atlas runs: SIGKILL then ``--resume`` continues from the last checkpoint; SIGTERM checkpoints.

Each test starts ``GINR_Atlas_base.py --train-only`` in its own process on the tiny phantom,
interrupts it part-way through registration training and inspects what is on disk.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from entry_points import atlas_config, start_entry, wait_for
from interruption import (
    EXIT_INTERRUPTED,
    atlas_argv,
    epoch_of,
    finish,
    load_checkpoint,
    load_checkpoints,
    log_rows,
    run_to_end,
    write_run_config,
)

pytestmark = pytest.mark.slow

ATLAS_EPOCHS = 40


@pytest.fixture
def atlas_run_config(tmp_path, data_copy) -> Path:
    data = atlas_config(data_copy, tmp_path / "runs", epochs=ATLAS_EPOCHS)
    data["TRAINING"]["CHECKPOINT_EVERY"] = 5
    return write_run_config(tmp_path, data)


def test_atlas_killed_and_resumed_continues_from_its_last_checkpoint(atlas_run_config, tmp_path):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "registration" / "last.ckpt"
    process = start_entry(atlas_argv(atlas_run_config, run_dir), tmp_path / "killed.log")
    wait_for(lambda: last.is_file() and epoch_of(last) >= 5, process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    on_disk = load_checkpoints(run_dir / "checkpoints", "*.ckpt")
    killed = on_disk["registration/last.ckpt"]
    assert 5 <= killed["epoch"] < ATLAS_EPOCHS
    assert killed["state_dict"]["latents.weight"].shape == (4, 8)

    run_to_end(atlas_argv(atlas_run_config, run_dir, "--resume"), tmp_path / "resumed.log")

    logs = sorted((run_dir / "logs" / "registration").glob("version_*/metrics.csv"))
    resumed_epochs = sorted({int(r["epoch"]) for r in log_rows(logs[-1]) if r.get("epoch")})
    assert len(logs) == 2
    assert resumed_epochs[0] >= killed["epoch"] and resumed_epochs[-1] == ATLAS_EPOCHS - 1
    final = load_checkpoint(last)
    assert final["epoch"] == ATLAS_EPOCHS
    assert final["state_dict"]["latents.weight"].shape == (4, 8)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_atlas_sigterm_or_ctrl_c_writes_a_checkpoint_and_exits_cleanly(tmp_path, data_copy, stop_signal):
    data = atlas_config(data_copy, tmp_path / "runs", epochs=ATLAS_EPOCHS)
    data["TRAINING"]["CHECKPOINT_EVERY"] = 10 * ATLAS_EPOCHS
    data["RUNTIME"]["PROGRESS_BAR"] = True
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    process = start_entry(atlas_argv(write_run_config(tmp_path, data), run_dir), log)
    wait_for(lambda: "Epoch 3:" in log.read_text(), process)  # pretraining has only epoch 0
    assert not (run_dir / "checkpoints" / "registration" / "last.ckpt").exists()
    process.send_signal(stop_signal)
    text = finish(process, log)

    assert process.returncode == EXIT_INTERRUPTED, text
    assert "Traceback" not in text
    assert "--resume" in text
    state = load_checkpoint(run_dir / "checkpoints" / "registration" / "last.ckpt")
    assert 1 <= state["epoch"] < ATLAS_EPOCHS
    assert state["state_dict"]["latents.weight"].shape == (4, 8)
