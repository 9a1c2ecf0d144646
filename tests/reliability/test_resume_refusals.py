"""``--resume`` continues only the run its folder records: any other run is refused in one line
naming the differing keys, and the folder is left byte for byte as it was.

A tiny gen-INR run (2 epochs) is trained once; each case resumes a copy of its folder with one
thing changed. Stopped runs (SIGTERM during the evaluation) exit 130 with a notice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

import pytest
from entry_points import SCRIPTS, interpolation_config, start_entry, wait_for
from interruption import EXIT_INTERRUPTED, finish, write_run_config

from retina_data.config import dump_yaml, read_yaml
from retina_data.run_identity import IDENTITY_FILE


def _argv(config: Path, run_dir: Path, *extra: str) -> list[str]:
    return [SCRIPTS["geninr"], str(config), "--gpu", "-1", "--quiet", "--output", str(run_dir), *extra]


def _contents(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, phantom_tree, launchers) -> tuple[Path, Path, Path]:
    """``(config, data, run folder)`` of a finished tiny gen-INR run on a private data copy."""
    root = tmp_path_factory.mktemp("resume")
    data = Path(shutil.copytree(phantom_tree, root / "data"))
    config = write_run_config(root, interpolation_config("geninr", data, root / "runs"))
    run_dir = root / "run"
    result = launchers("interpolation").run(_argv(config, run_dir), root)
    assert result.returncode == 0, result.stderr
    assert (run_dir / IDENTITY_FILE).is_file() and (run_dir / "checkpoints" / "last.pt").is_file()
    return config, data, run_dir


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained[2], tmp_path / "run"))


def _other_data(trained, tmp_path) -> list[str]:
    config, data, _ = trained
    other = Path(shutil.copytree(data, tmp_path / "other_data"))
    changed = read_yaml(config)
    changed["SETTINGS"]["IMG_DIR"] = str(other)
    return [str(write_run_config(tmp_path, changed))]


def _config_with(trained, tmp_path, section: str, key: str, value) -> list[str]:
    changed = read_yaml(trained[0])
    changed[section][key] = value
    return [str(write_run_config(tmp_path, changed))]


CHANGES = {
    # case: (command-line change, words the refusal must contain)
    "fold": (lambda trained, tmp: ["--fold", "1"], ["SETTINGS.FOLD (was 0, now 1)", "eyes.train"]),
    "data_folder": (_other_data, ["SETTINGS.IMG_DIR (was ", "other_data"]),
    "learning_rate": (
        lambda trained, tmp: ["--set", "TRAINING.LEARNING_RATE=0.5"],
        ["TRAINING.LEARNING_RATE (was 0.001, now 0.5)"],
    ),
    "epochs": (lambda trained, tmp: ["--epochs", "5"], ["TRAINING.TOTAL_EPOCHS (was 2, now 5)"]),
    "hidden_size": (
        lambda trained, tmp: _config_with(trained, tmp, "MODEL", "HIDDEN_SIZE", 24),
        ["MODEL.HIDDEN_SIZE (was 16, now 24)"],
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_resume_of_a_changed_run_is_refused_naming_the_key_and_leaves_the_folder_as_it_was(
    change, trained, run_copy, tmp_path, launchers
) -> None:
    make_args, needles = CHANGES[change]
    args = make_args(trained, tmp_path)
    config = args[0] if args and args[0].endswith(".yaml") else str(trained[0])
    extra = args[1:] if args and args[0].endswith(".yaml") else args
    before = _contents(run_copy)

    result = launchers("interpolation").run(_argv(Path(config), run_copy, "--resume", *extra), tmp_path)

    lines = _error_lines(result.stderr)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: {run_copy}: --resume with a different run: "), lines
    assert all(needle in lines[0] for needle in needles), lines[0]
    assert _contents(run_copy) == before


def test_a_data_file_changed_since_the_run_started_is_named(trained, run_copy, tmp_path, launchers) -> None:
    config, data, _ = trained
    oct_file = data / "sub001" / "OD" / "oct_flat_od.nii.gz"
    stat = oct_file.stat()
    before = _contents(run_copy)
    try:
        os.utime(oct_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        result = launchers("interpolation").run(_argv(config, run_copy, "--resume"), tmp_path)
    finally:
        os.utime(oct_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert result.returncode == 2, result.stderr
    assert "data file sub001/OD/oct_flat_od.nii.gz (was " in result.stderr
    assert _contents(run_copy) == before


def test_an_unchanged_resume_rewrites_neither_config_nor_records(trained, run_copy, tmp_path, launchers) -> None:
    config = trained[0]
    records = {name: (run_copy / name).read_bytes() for name in ("config.yaml", IDENTITY_FILE, "run_info.json")}
    result = launchers("interpolation").run(
        _argv(config, run_copy, "--resume", "--set", "SETTINGS.COMPILE=false"), tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert {name: (run_copy / name).read_bytes() for name in records} == records


def test_a_missing_last_checkpoint_beside_best_is_refused_naming_both(trained, run_copy, tmp_path, launchers) -> None:
    checkpoints = run_copy / "checkpoints"
    (checkpoints / "last.pt").unlink()
    (checkpoints / "last.prev.pt").unlink(missing_ok=True)
    before = _contents(run_copy)

    result = launchers("interpolation").run(_argv(trained[0], run_copy, "--resume"), tmp_path)

    lines = _error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert f"{checkpoints / 'last.pt'}: not found" in lines[0] and str(checkpoints / "best.pt") in lines[0]
    assert _contents(run_copy) == before


def test_the_rotated_previous_checkpoint_is_offered_when_last_is_missing(
    trained, run_copy, tmp_path, launchers
) -> None:
    checkpoints = run_copy / "checkpoints"
    assert (checkpoints / "last.prev.pt").is_file()  # two epochs, a checkpoint after each
    (checkpoints / "last.pt").unlink()
    result = launchers("interpolation").run(_argv(trained[0], run_copy, "--resume"), tmp_path)
    assert result.returncode == 2 and "last.prev.pt" in result.stderr and "rename it" in result.stderr


def test_a_run_folder_of_an_older_version_is_compared_by_its_config(trained, run_copy, tmp_path, launchers) -> None:
    """No run_identity.json: the saved config.yaml still refuses a structural change (no traceback)."""
    (run_copy / IDENTITY_FILE).unlink()
    args = _config_with(trained, tmp_path, "MODEL", "HIDDEN_SIZE", 24)
    result = launchers("interpolation").run(_argv(Path(args[0]), run_copy, "--resume"), tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "MODEL.HIDDEN_SIZE (was 16, now 24)" in result.stderr


def test_a_checkpoint_of_another_architecture_is_refused_before_restoring(
    trained, run_copy, tmp_path, launchers
) -> None:
    """An older run whose config.yaml agrees with the command but whose last.pt holds other shapes."""
    (run_copy / IDENTITY_FILE).unlink()
    saved = read_yaml(run_copy / "config.yaml")
    saved["MODEL"]["HIDDEN_SIZE"] = 24
    (run_copy / "config.yaml").write_text(dump_yaml(saved), encoding="utf-8")
    args = _config_with(trained, tmp_path, "MODEL", "HIDDEN_SIZE", 24)
    before = _contents(run_copy)

    result = launchers("interpolation").run(_argv(Path(args[0]), run_copy, "--resume"), tmp_path)

    lines = _error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "last.pt: the checkpoint does not match the network of the config" in lines[0]
    assert _contents(run_copy) == before


@pytest.mark.slow
def test_sigterm_during_the_evaluation_exits_130_with_a_notice(trained, tmp_path) -> None:
    config, _data, _ = trained
    long_fit = read_yaml(config)
    long_fit["TEST"].update(TOTAL_EPOCHS=100000, EPOCHS_TIL_SUMMARY=100000)
    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    process = start_entry(_argv(write_run_config(tmp_path, long_fit), run_dir), log)
    wait_for((run_dir / "model.pt").is_file, process)
    process.send_signal(signal.SIGTERM)
    text = finish(process, log)

    assert process.returncode == EXIT_INTERRUPTED, text
    assert "Traceback" not in text
    assert "notice: stopped during the evaluation" in text and "--resume" in text


def test_an_evaluation_on_another_fold_holding_its_training_eyes_is_refused(
    trained, run_copy, tmp_path, launchers
) -> None:
    """``--eval RUN --set SETTINGS.FOLD=1``: fold 1 tests sub001, on which the fold-0 run trained
    (before: scored it, exit 0)."""
    before = _contents(run_copy)
    argv = [
        SCRIPTS["geninr"],
        "--gpu",
        "-1",
        "--quiet",
        "--eval",
        str(run_copy),
        "--set",
        "SETTINGS.FOLD=1",
        "--overwrite",
    ]

    result = launchers("interpolation").run(argv, tmp_path)

    lines = _error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0] == (
        f"error: --eval {run_copy}: test eye(s) sub001_OD, sub001_OS are training eyes of the run in "
        f"{run_copy} ({IDENTITY_FILE}); evaluate it on the fold it was trained for, or on other data"
    )
    assert _contents(run_copy) == before
