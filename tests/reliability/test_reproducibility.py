"""Reproducibility: two ``--deterministic`` CPU runs of one config agree exactly; each run folder records itself.

Both trees are run twice end to end (training, test-time fit, evaluation) on the tiny
phantom, each run in its own process.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from entry_points import SCRIPTS, atlas_config, interpolation_config, run_entry

from anisotropic_interpolation.config import ExperimentConfig
from atlas_registration.config import AtlasConfig
from retina_data.config import dump_yaml, load_config

pytestmark = pytest.mark.slow

TIMING_COLUMNS = {"time_s", "seconds"}


def _two_runs(tmp: Path, script: str, config: dict, *extra: str) -> tuple[Path, Path]:
    """Run ``script`` twice on one config file with ``--deterministic``; returns both run folders."""
    path = tmp / "config.yaml"
    path.write_text(dump_yaml(config), encoding="utf-8")
    runs = []
    for name in ("first", "second"):
        out = tmp / name
        result = run_entry([script, str(path), "--gpu", "-1", "--deterministic", "--output", str(out), *extra])
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(out)
    return runs[0], runs[1]


def _table(path: Path) -> list[dict[str, str]]:
    """A CSV's rows without timing columns."""
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def _tensors_equal(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def geninr_runs(tmp_path_factory, phantom_tree) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("geninr_determinism")
    return _two_runs(tmp, SCRIPTS["geninr"], interpolation_config("geninr", phantom_tree, tmp, epochs=4), "--quiet")


@pytest.fixture(scope="module")
def atlas_runs(tmp_path_factory, phantom_tree) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("atlas_determinism")
    return _two_runs(tmp, SCRIPTS["atlas"], atlas_config(phantom_tree, tmp, epochs=3))


def test_geninr_deterministic_runs_give_identical_weights_and_codes(geninr_runs):
    first, second = (torch.load(run / "model.pt", weights_only=False) for run in geninr_runs)
    assert _tensors_equal(first["network"], second["network"])
    assert torch.equal(first["codes"], second["codes"])


def test_geninr_deterministic_runs_give_identical_metrics(geninr_runs):
    first, second = (_table(run / "evaluation" / "metrics_all.csv") for run in geninr_runs)
    assert first and first == second


def test_atlas_deterministic_runs_give_identical_weights_and_codes(atlas_runs):
    first, second = (
        torch.load(run / "checkpoints" / "registration" / "last.ckpt", weights_only=False) for run in atlas_runs
    )
    assert "latents.weight" in first["state_dict"]
    assert _tensors_equal(first["state_dict"], second["state_dict"])


def test_atlas_deterministic_runs_give_identical_metrics(atlas_runs):
    first, second = (_table(run / "results" / "metrics_all.csv") for run in atlas_runs)
    assert first and first == second


@pytest.mark.parametrize(
    ("runs", "schema", "script"),
    [
        ("geninr_runs", ExperimentConfig, SCRIPTS["geninr"]),
        ("atlas_runs", AtlasConfig, SCRIPTS["atlas"]),
    ],
)
def test_run_folder_records_config_versions_commit_device_precision_and_command_line(runs, schema, script, request):
    run = request.getfixturevalue(runs)[0]
    record = json.loads((run / "run_info.json").read_text())
    config = load_config(run / "config.yaml", schema)

    assert config.TRAINING.TOTAL_EPOCHS in (3, 4)
    assert record["packages"]["torch"] == torch.__version__
    assert record["packages"]["numpy"] is not None
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["git_commit"])
    assert record["device"].startswith("cpu")
    assert record["precision"] in ("fp32", "32-true")  # mixed precision only on GPUs with native bf16
    assert script in record["command_line"] and "--deterministic" in record["command_line"]
