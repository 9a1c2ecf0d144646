"""Atlas runs stopped during the evaluation (SIGTERM or Ctrl-C after training, or in an inference
script) exit 130 with the README's notice, and ``--resume`` evaluates again without training.

Before, Lightning turned a SIGTERM in a per-eye fit into a silent exit 0 (a Ctrl-C into exit 1),
and outside a fit SIGTERM killed the process (143) with no word.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
import torch
from entry_points import SCRIPTS, atlas_config, start_entry, wait_for
from interruption import EXIT_INTERRUPTED, finish, load_checkpoint, write_run_config

pytestmark = pytest.mark.slow

REGISTRATION_LAST = Path("checkpoints") / "registration" / "last.ckpt"
NOTICE = "notice: stopped during the evaluation; "


def _long_evaluation_config(data: Path, folder: Path) -> Path:
    """The tiny atlas config whose per-eye fits run for 100,000 epochs (stopped long before)."""
    config = atlas_config(data, folder / "runs")
    config["TEST"].update(TOTAL_EPOCHS=100000)
    return write_run_config(folder, config)


def _stop_in_evaluation(argv: list[str], log: Path, stop_signal: signal.Signals) -> str:
    """Start ``argv``, send ``stop_signal`` once the GINR inference has begun; returns the output."""
    process = start_entry(argv, log)
    wait_for(lambda: "GINR inference" in log.read_text(), process)
    process.send_signal(stop_signal)
    text = finish(process, log)
    assert process.returncode == EXIT_INTERRUPTED, text
    return text


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, phantom_tree) -> tuple[Path, Path]:
    """``(config, run folder)``: a tiny atlas trained to its end (``--train-only``), evaluation not begun."""
    root = tmp_path_factory.mktemp("stopped_evaluation")
    data = Path(shutil.copytree(phantom_tree, root / "data"))
    config = _long_evaluation_config(data, root)
    run_dir = root / "run"
    process = start_entry(
        [SCRIPTS["atlas"], str(config), "--gpu", "-1", "--train-only", "--output", str(run_dir)], root / "train.log"
    )
    assert "Traceback" not in finish(process, root / "train.log") and process.returncode == 0
    return config, run_dir


def test_a_stopped_atlas_evaluation_exits_130_and_resume_evaluates_again_without_training(trained_run, tmp_path):
    config, trained = trained_run
    run_dir = Path(shutil.copytree(trained, tmp_path / "run"))
    argv = [SCRIPTS["atlas"], str(config), "--gpu", "-1", "--output", str(run_dir), "--resume"]
    trained_state = load_checkpoint(run_dir / REGISTRATION_LAST)

    first = _stop_in_evaluation(argv, tmp_path / "first.log", signal.SIGTERM)
    again = _stop_in_evaluation(argv, tmp_path / "again.log", signal.SIGINT)

    for text in (first, again):
        assert "Traceback" not in text
        assert f"{NOTICE}{run_dir} holds no complete results; continue with --resume" in text
    state = load_checkpoint(run_dir / REGISTRATION_LAST)
    assert state["epoch"] == trained_state["epoch"]
    assert all(torch.equal(value, trained_state["state_dict"][name]) for name, value in state["state_dict"].items())
    assert not (run_dir / "results" / "summary.md").exists()


@pytest.mark.parametrize("entry", ["atlas_inference", "atlas_resolution"])
def test_an_atlas_inference_stopped_by_sigterm_exits_130_with_the_notice(entry, trained_run, tmp_path):
    config, trained = trained_run
    output = tmp_path / "inference"
    argv = [
        SCRIPTS[entry],
        str(config),
        "--gpu",
        "-1",
        "--checkpoint",
        str(trained / REGISTRATION_LAST),
        "--output",
        str(output),
    ]

    text = _stop_in_evaluation(argv, tmp_path / "run.log", signal.SIGTERM)

    assert "Traceback" not in text and f"{NOTICE}{output} holds no complete results" in text
