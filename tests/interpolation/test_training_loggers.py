"""The population training's summary rows go through the shared loggers (SETTINGS.LOGGERS) as well."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from tiny_configs import tiny_trainer

from retina_data import run_loggers
from retina_data.errors import ConfigError


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_csv_logger_records_the_rows_of_training_log_csv(make_config, tiny_eyes, tmp_path: Path) -> None:
    tiny_trainer(make_config(SETTINGS={"LOGGERS": []}), tiny_eyes, checkpoint_dir=tmp_path).train()
    own = _rows(tmp_path / "training_log.csv")
    logged = _rows(tmp_path / "logs" / "version_0" / "metrics.csv")
    assert len(own) == len(logged) == 2  # a summary every 2 of 4 epochs
    for mine, theirs in zip(own, logged):
        assert int(theirs["step"]) == int(float(mine["epoch"]))
        assert float(theirs["loss"]) == pytest.approx(float(mine["loss"]), rel=1e-12)


def test_a_restart_logs_to_the_next_version(make_config, tiny_eyes, tmp_path: Path) -> None:
    tiny_trainer(make_config(TRAINING={"TOTAL_EPOCHS": 2}), tiny_eyes, checkpoint_dir=tmp_path).train()
    tiny_trainer(make_config(), tiny_eyes, checkpoint_dir=tmp_path).train(resume=True)
    assert [int(row["step"]) for row in _rows(tmp_path / "logs" / "version_1" / "metrics.csv")] == [4]


def test_tensorboard_asked_for_without_the_package_is_a_notice_and_the_run_goes_on(
    make_config, tiny_eyes, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setitem(run_loggers.OPTIONAL_LOGGERS, "tensorboard", ("tensorboard_not_installed_here",))
    monkeypatch.setattr(run_loggers, "_noticed", set())
    config = make_config(SETTINGS={"LOGGERS": ["csv", "tensorboard"]})
    tiny_trainer(config, tiny_eyes, checkpoint_dir=tmp_path).train()
    assert capsys.readouterr().err.count("notice: SETTINGS.LOGGERS asks for tensorboard") == 1
    assert len(_rows(tmp_path / "logs" / "version_0" / "metrics.csv")) == 2
    assert not (tmp_path / "tensorboard").exists()


def test_an_unknown_logger_is_refused_naming_the_key(make_config) -> None:
    with pytest.raises(ConfigError, match=r"SETTINGS.LOGGERS"):
        make_config(SETTINGS={"LOGGERS": ["mlflow"]})
