"""What the interrupted-run tests of both trees share: run configs, process control, checkpoint reading."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import torch
from entry_points import SCRIPTS, start_entry

from retina_data.config import dump_yaml

EXIT_INTERRUPTED = 130


def write_run_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(dump_yaml(data), encoding="utf-8")
    return path


def geninr_argv(config: Path, output: Path, *extra: str) -> list[str]:
    """Seeded (``--deterministic``), so that two runs of one config can be compared."""
    return [
        SCRIPTS["geninr"],
        str(config),
        "--gpu",
        "-1",
        "--quiet",
        "--deterministic",
        "--output",
        str(output),
        *extra,
    ]


def atlas_argv(config: Path, output: Path, *extra: str) -> list[str]:
    return [SCRIPTS["atlas"], str(config), "--gpu", "-1", "--train-only", "--output", str(output), *extra]


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    """Wait for the process; returns its output (stdout and stderr)."""
    process.wait(timeout=timeout)
    return log.read_text()


def run_to_end(argv: list[str], log: Path) -> str:
    process = start_entry(argv, log)
    text = finish(process, log)
    assert process.returncode == 0, text
    return text


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def load_checkpoints(folder: Path, pattern: str) -> dict[str, dict]:
    """Every checkpoint under ``folder`` (temporary files of an interrupted write excepted), loaded."""
    return {
        str(p.relative_to(folder)): load_checkpoint(p)
        for p in sorted(folder.rglob(pattern))
        if not p.name.startswith(".")
    }


def log_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def epoch_of(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["epoch"])
    except Exception:
        return -1
