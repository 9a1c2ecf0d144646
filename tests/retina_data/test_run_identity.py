"""Run identity: what a run folder records, how two runs are compared, and the one-line refusal."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from retina_data.errors import ConfigError, DataError
from retina_data.eye import Eye, positions_problem
from retina_data.files import atomic_save, previous_path
from retina_data.run_identity import (
    IDENTITY_FILE,
    RunIdentity,
    check_resume,
    flatten_config,
    read_run_identity,
    write_run_identity,
)

CONFIG = {
    "SETTINGS": {"FOLD": 0, "COMPILE": None, "IMG_DIR": "/data"},
    "TRAINING": {"LEARNING_RATE": 1e-3, "TOTAL_EPOCHS": 10, "LATENT_CODE": {"SIZE": 8}},
    "EVALUATION": {"FIGURES": True, "EXCLUDE_SUBJECTS": ["sub004"]},
}
FREE = ("SETTINGS.COMPILE", "EVALUATION.FIGURES")
EYES = {"train": ["sub001_OD", "sub001_OS"], "test": ["sub003_OD"]}


def _identity(tmp_path: Path, config=CONFIG, eyes=EYES) -> RunIdentity:
    return RunIdentity.of("train_test_geninr", config, FREE, eyes, sorted(tmp_path.glob("data/*")), tmp_path / "data")


@pytest.fixture
def data_files(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.nii.gz").write_bytes(b"1234")
    (folder / "b.nii.gz").write_bytes(b"123456")
    return folder


def test_nested_config_flattens_to_dotted_keys_with_lists_as_values() -> None:
    assert flatten_config(CONFIG) == {
        "SETTINGS.FOLD": 0,
        "SETTINGS.COMPILE": None,
        "SETTINGS.IMG_DIR": "/data",
        "TRAINING.LEARNING_RATE": 1e-3,
        "TRAINING.TOTAL_EPOCHS": 10,
        "TRAINING.LATENT_CODE.SIZE": 8,
        "EVALUATION.FIGURES": True,
        "EVALUATION.EXCLUDE_SUBJECTS": ["sub004"],
    }


def test_the_record_holds_the_config_without_free_keys_the_eyes_and_file_sizes(tmp_path, data_files) -> None:
    identity = _identity(tmp_path)
    assert "SETTINGS.COMPILE" not in identity.config and "EVALUATION.FIGURES" not in identity.config
    assert identity.config["TRAINING.LATENT_CODE.SIZE"] == 8
    assert identity.eyes == EYES
    assert {name: size for name, (size, _) in identity.files.items()} == {"a.nii.gz": 4, "b.nii.gz": 6}
    write_run_identity(tmp_path, identity)
    assert read_run_identity(tmp_path) == identity
    assert identity.differences(read_run_identity(tmp_path)) == []


def test_every_differing_key_is_named_with_both_values(tmp_path, data_files) -> None:
    before = _identity(tmp_path)
    changed = {
        **CONFIG,
        "SETTINGS": {**CONFIG["SETTINGS"], "FOLD": 1, "COMPILE": True},
        "TRAINING": {**CONFIG["TRAINING"], "LEARNING_RATE": 0.01},
    }
    (data_files / "b.nii.gz").write_bytes(b"12")
    after = _identity(tmp_path, changed, {"train": ["sub001_OD"], "test": ["sub003_OD"]})
    differences = before.differences(after)
    assert differences[:2] == ["SETTINGS.FOLD (was 0, now 1)", "TRAINING.LEARNING_RATE (was 0.001, now 0.01)"]
    assert differences[2] == 'eyes.train (was ["sub001_OD", "sub001_OS"], now ["sub001_OD"])'
    assert differences[3].startswith("data file b.nii.gz (was 6 bytes of ") and " now 2 bytes of " in differences[3]
    assert len(differences) == 4  # SETTINGS.COMPILE is free


def test_a_resume_of_another_run_is_refused_in_one_line(tmp_path, data_files) -> None:
    before = _identity(tmp_path)
    after = _identity(tmp_path, {**CONFIG, "TRAINING": {**CONFIG["TRAINING"], "TOTAL_EPOCHS": 20}})
    check_resume(tmp_path, before, before)
    with pytest.raises(ConfigError) as refused:
        check_resume(tmp_path / "run", before, after)
    message = str(refused.value)
    assert message.startswith(
        f"{tmp_path / 'run'}: --resume with a different run: TRAINING.TOTAL_EPOCHS (was 10, now 20)"
    )
    assert "\n" not in message


def test_a_key_added_or_removed_reads_as_absent(tmp_path, data_files) -> None:
    before = _identity(tmp_path)
    after = _identity(tmp_path, {**CONFIG, "MODEL": {"HIDDEN_SIZE": 32}})
    assert before.differences(after) == ["MODEL.HIDDEN_SIZE (was absent, now 32)"]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"config": [1]}'])
def test_a_damaged_record_is_a_data_error(tmp_path, text) -> None:
    (tmp_path / IDENTITY_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=IDENTITY_FILE):
        read_run_identity(tmp_path)


def test_rotated_write_keeps_the_replaced_file_and_a_failed_write_keeps_both(tmp_path) -> None:
    path = tmp_path / "last.pt"
    atomic_save(path, lambda tmp: tmp.write_bytes(b"first"), keep_previous=True)
    assert not previous_path(path).exists()
    atomic_save(path, lambda tmp: tmp.write_bytes(b"second"), keep_previous=True)
    assert (path.read_bytes(), previous_path(path).read_bytes()) == (b"second", b"first")
    assert previous_path(path).name == "last.prev.pt"

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError):
        atomic_save(path, fail, keep_previous=True)
    assert (path.read_bytes(), previous_path(path).read_bytes()) == (b"second", b"first")
    assert sorted(os.listdir(tmp_path)) == ["last.prev.pt", "last.pt"]


def test_non_finite_positions_are_refused_by_the_eye_record() -> None:
    assert "1 NaN/Inf" in positions_problem(np.array([0.0, np.nan, 2.0]))
    assert positions_problem(np.array([0.0, 1.0])) is None
    with pytest.raises(DataError, match="B-scan positions hold 1 NaN/Inf"):
        Eye(oct=np.zeros((2, 2, 3), np.float32), spacing=(1, 1, 1), subject="s", bscan_positions=[0, np.inf, 2])
