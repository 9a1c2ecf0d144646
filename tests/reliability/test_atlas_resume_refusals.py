"""The atlas tree's ``--resume`` continues only the run its folder records, its ``last.ckpt``
rotates, a non-finite loss stops the run, and a run's log holds no third-party warnings.

A tiny atlas run (2 registration epochs, training eyes read from their ``subsmpl2`` files) is
trained once; each case resumes a copy of its folder with one thing changed and must be refused
in one line naming what changed, leaving every file of the folder byte for byte as it was
(before: a changed network crashed in the restore and the failed restore overwrote
``checkpoints/registration/last.ckpt`` with an untrained one).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch
from entry_points import SCRIPTS, atlas_config
from interruption import write_run_config

from retina_data.config import dump_yaml, read_yaml
from retina_data.preprocessing import write_subsampled
from retina_data.run_identity import IDENTITY_FILE

SUBSAMPLE = 2
REGISTRATION = Path("checkpoints") / "registration"


def _argv(config: Path, run_dir: Path, *extra: str) -> list[str]:
    return [SCRIPTS["atlas"], str(config), "--gpu", "-1", "--train-only", "--output", str(run_dir), *extra]


def _contents(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantom_tree, launchers) -> tuple[Path, Path, Path]:
    """``(config, data, run folder)`` of a finished tiny atlas training on a private data copy."""
    root = tmp_path_factory.mktemp("atlas_resume")
    data = Path(shutil.copytree(phantom_tree, root / "data"))
    write_subsampled(data, [SUBSAMPLE], progress=False)
    config_data = atlas_config(data, root / "runs")
    config_data["DATA"]["SUBSMPL_FACTOR"] = SUBSAMPLE
    config = write_run_config(root, config_data)
    run_dir = root / "run"
    result = launchers("atlas").run(_argv(config, run_dir), root)
    assert result.returncode == 0, result.stderr
    assert (run_dir / IDENTITY_FILE).is_file() and (run_dir / REGISTRATION / "last.ckpt").is_file()
    return config, data, run_dir


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained[2], tmp_path / "run"))


def _changed_config(trained, tmp_path: Path, section: str, key: str, value) -> Path:
    changed = read_yaml(trained[0])
    changed[section][key] = value
    return write_run_config(tmp_path, changed)


CHANGES = {
    # case: (section, key, new value, words the refusal must contain)
    "fold": ("SETTINGS", "FOLD", 1, ["SETTINGS.FOLD (was 0, now 1)", "eyes.train"]),
    "learning_rate": ("TRAINING", "LEARNING_RATE", 0.5, ["TRAINING.LEARNING_RATE (was 0.001, now 0.5)"]),
    "epochs": ("TRAINING", "TOTAL_EPOCHS", 5, ["TRAINING.TOTAL_EPOCHS (was 2, now 5)"]),
    "test_fit": ("TEST", "TOTAL_EPOCHS", 3, ["TEST.TOTAL_EPOCHS (was 1, now 3)"]),
    "hidden_size": ("DISP_MODEL", "HIDDEN_SIZE", 24, ["DISP_MODEL.HIDDEN_SIZE (was 16, now 24)"]),
    "subsample_factor": (
        "DATA",
        "SUBSMPL_FACTOR",
        1,
        ["DATA.SUBSMPL_FACTOR (was 2, now 1)", "data file sub001/OD/oct_flat_subsmpl2_od.nii.gz"],
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_changed_atlas_resume_is_refused_naming_the_key_and_leaves_the_folder_as_it_was(
    change, trained, run_copy, tmp_path, launchers
) -> None:
    section, key, value, needles = CHANGES[change]
    config = _changed_config(trained, tmp_path, section, key, value)
    before = _contents(run_copy)

    result = launchers("atlas").run(_argv(config, run_copy, "--resume"), tmp_path)

    lines = _lines(result.stderr)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {run_copy}: --resume with a different run: "), lines
    assert all(needle in lines[0] for needle in needles), lines[0]
    assert _contents(run_copy) == before


def test_a_subsampled_data_file_changed_since_the_run_started_is_named(trained, run_copy, tmp_path, launchers) -> None:
    config, data, _ = trained
    read = data / "sub001" / "OD" / f"oct_flat_subsmpl{SUBSAMPLE}_od.nii.gz"
    stat = read.stat()
    before = _contents(run_copy)
    try:
        os.utime(read, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        result = launchers("atlas").run(_argv(config, run_copy, "--resume"), tmp_path)
    finally:
        os.utime(read, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert result.returncode == 2, result.stderr
    assert f"data file sub001/OD/oct_flat_subsmpl{SUBSAMPLE}_od.nii.gz (was " in result.stderr
    assert _contents(run_copy) == before


def test_an_older_run_folder_with_a_checkpoint_of_another_network_is_refused_before_restoring(
    trained, run_copy, tmp_path, launchers
) -> None:
    """No run_identity.json, a config.yaml that agrees with the command, a last.ckpt of other shapes:
    refused in one line, and the failed restore no longer overwrites last.ckpt."""
    (run_copy / IDENTITY_FILE).unlink()
    saved = read_yaml(run_copy / "config.yaml")
    saved["DISP_MODEL"]["HIDDEN_SIZE"] = 24
    (run_copy / "config.yaml").write_text(dump_yaml(saved), encoding="utf-8")
    config = _changed_config(trained, tmp_path, "DISP_MODEL", "HIDDEN_SIZE", 24)
    before = _contents(run_copy)

    result = launchers("atlas").run(_argv(config, run_copy, "--resume"), tmp_path)

    lines = _lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "last.ckpt: the checkpoint does not match the network of the config" in lines[0]
    assert "deformation" in lines[0] and "DISP_MODEL" in lines[0]
    assert _contents(run_copy) == before


@pytest.mark.parametrize("kept", ["last.prev.ckpt", "epoch=00001.ckpt"])
def test_a_missing_last_checkpoint_beside_earlier_ones_is_refused_naming_them(
    kept, trained, run_copy, tmp_path, launchers
) -> None:
    folder = run_copy / REGISTRATION
    assert (folder / "last.prev.ckpt").is_file() and (folder / "epoch=00001.ckpt").is_file()
    for name in ("last.ckpt", "last.prev.ckpt", "epoch=00001.ckpt"):
        if name != kept:
            (folder / name).unlink()
    before = _contents(run_copy)

    result = launchers("atlas").run(_argv(trained[0], run_copy, "--resume"), tmp_path)

    lines = _lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert f"{folder / 'last.ckpt'}: not found, but {kept}" in lines[0] and "--overwrite" in lines[0]
    assert _contents(run_copy) == before


def test_an_unchanged_resume_may_change_free_keys_and_keeps_the_records(trained, run_copy, tmp_path, launchers) -> None:
    """Progress bar, loggers, figures, chunk size are free; the records are not rewritten; the
    previous last.ckpt is kept as last.prev.ckpt when the resumed run writes a new one."""
    changed = read_yaml(trained[0])
    changed["RUNTIME"]["PROGRESS_BAR"] = True
    changed["EVALUATION"].update(FIGURES=True, CHUNK_POINTS=2048)
    config = write_run_config(tmp_path, changed)
    records = {name: (run_copy / name).read_bytes() for name in ("config.yaml", IDENTITY_FILE, "run_info.json")}
    last = run_copy / REGISTRATION / "last.ckpt"
    previous = last.read_bytes()

    result = launchers("atlas").run(_argv(config, run_copy, "--resume"), tmp_path)

    assert result.returncode == 0, result.stderr
    assert {name: (run_copy / name).read_bytes() for name in records} == records
    assert (run_copy / REGISTRATION / "last.prev.ckpt").read_bytes() == previous


def test_a_diverging_atlas_run_stops_with_one_line_and_keeps_no_non_finite_checkpoint(
    trained, tmp_path, launchers
) -> None:
    config = _changed_config(trained, tmp_path, "TRAINING", "LEARNING_RATE", 1e30)
    run_dir = tmp_path / "diverged"

    result = launchers("atlas").run(_argv(config, run_dir), tmp_path)

    lines = [line for line in _lines(result.stderr) if "%|" not in line]  # the median atlas's progress bar
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: GINRAtlasRegistration diverged in epoch 1, step ")
    assert "non-finite loss (mse nan" in lines[0] and "TRAINING.LEARNING_RATE (now 1e+30)" in lines[0]
    for path in run_dir.rglob("*.ckpt"):
        state = torch.load(path, map_location="cpu", weights_only=False)
        assert all(
            bool(value.isfinite().all()) for value in state["state_dict"].values() if value.is_floating_point()
        ), path


THIRD_PARTY = (
    "site-packages",
    "Warning",
    "warn",
    "Tip",
    "GPU available",
    "TPU available",
    "eval mode",
    "weights_only",
    "`Trainer.fit` stopped",
    "LeafSpec",
)


def test_a_tiny_atlas_pipeline_prints_no_third_party_lines(trained, tmp_path, launchers) -> None:
    """Training, per-eye fits and evaluation: stderr holds our own progress bars only (before: Lightning's
    device banners, tips, deprecation and eval-mode warnings), stdout the two summary tables."""
    result = launchers("atlas").run(
        [SCRIPTS["atlas"], str(trained[0]), "--gpu", "-1", "--output", str(tmp_path / "run")], tmp_path
    )
    assert result.returncode == 0, result.stderr
    noisy = [line for line in _lines(result.stderr) if any(word in line for word in THIRD_PARTY)]
    assert not noisy, noisy
    assert "summary.md" in result.stdout and "summary_reference.md" in result.stdout


@pytest.mark.parametrize("entry", ["atlas_inference", "atlas_resolution"])
def test_an_inference_on_another_fold_holding_the_training_eyes_is_refused(
    entry, trained, run_copy, tmp_path, launchers
) -> None:
    """The fold-0 checkpoint applied to fold 1, which tests sub001, a training subject of fold 0
    (before: registered and scored it, exit 0)."""
    config = _changed_config(trained, tmp_path, "SETTINGS", "FOLD", 1)
    checkpoint = run_copy / REGISTRATION / "last.ckpt"
    output = tmp_path / "inference"

    result = launchers("atlas").run(
        [SCRIPTS[entry], str(config), "--gpu", "-1", "--checkpoint", str(checkpoint), "--output", str(output)], tmp_path
    )

    lines = _lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error: {checkpoint}: test eye(s) sub001_OD, sub001_OS are training eyes of the run")
    assert not output.exists()
