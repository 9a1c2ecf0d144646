"""The loggers both trees build from ``LOGGERS``: CSV always, the optional ones when installed."""

from __future__ import annotations

import csv
import gc

import pytest
from lightning.pytorch.loggers import CSVLogger

from retina_data import run_loggers
from retina_data.run_loggers import available_loggers, build_loggers, log_summary


@pytest.fixture(autouse=True)
def _fresh_notices(monkeypatch):
    """Each test starts as a new process would: no notice given yet."""
    monkeypatch.setattr(run_loggers, "_noticed", set())


@pytest.fixture
def without_tensorboard(monkeypatch):
    """TensorBoard as on a base install: none of its modules importable."""
    monkeypatch.setitem(run_loggers.OPTIONAL_LOGGERS, "tensorboard", ("tensorboard_not_installed_here",))


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("names", [[], ["csv"], ["csv", "csv"]])
def test_every_list_gets_exactly_one_csv_logger(names, tmp_path):
    loggers = build_loggers(names, tmp_path, "stage", key="RUNTIME.LOGGERS")
    assert [type(logger) for logger in loggers] == [CSVLogger]
    assert loggers[0].log_dir == str(tmp_path / "logs" / "stage" / "version_0")


def test_a_logger_asked_for_but_not_installed_is_left_out_with_one_notice_naming_key_and_extra(
    without_tensorboard, tmp_path, capsys
):
    assert available_loggers(["tensorboard", "csv"], "SETTINGS.LOGGERS") == ["csv"]
    assert available_loggers(["tensorboard"], "SETTINGS.LOGGERS") == ["csv"]
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        (
            "notice: SETTINGS.LOGGERS asks for tensorboard, which is not installed; logging to CSV "
            "without it (pip install 'resa-oct[tensorboard]')"
        )
    ]


def test_the_notice_names_the_key_of_the_tree_that_asked(without_tensorboard, capsys):
    available_loggers(["tensorboard"], "SETTINGS.LOGGERS")
    available_loggers(["tensorboard"], "RUNTIME.LOGGERS")
    err = capsys.readouterr().err
    assert "notice: SETTINGS.LOGGERS asks for tensorboard" in err and "notice: RUNTIME.LOGGERS asks for" in err


def test_tensorboard_logs_when_installed(tmp_path):
    if not run_loggers.installed("tensorboard"):
        pytest.skip("neither tensorboard nor tensorboardX is installed (extra resa-oct[tensorboard])")
    from lightning.pytorch.loggers import TensorBoardLogger

    owner = type("Loop", (), {})()
    log_summary(owner, {"loss": 0.5}, 10, tmp_path, ["tensorboard"], key="SETTINGS.LOGGERS", project="p")
    assert available_loggers(["tensorboard"], "SETTINGS.LOGGERS") == ["csv", "tensorboard"]
    assert [type(logger) for logger in build_loggers(["tensorboard"], tmp_path / "b", "", key="k")] == [
        CSVLogger,
        TensorBoardLogger,
    ]
    assert list((tmp_path / "tensorboard" / "version_0").glob("events.out.tfevents.*"))


def test_summary_rows_of_one_training_go_to_one_version_and_a_second_training_to_the_next(tmp_path):
    class Loop:
        pass

    first, second = Loop(), Loop()
    log_summary(first, {"epoch": 2.0, "loss": 0.75}, 2, tmp_path, ["csv"], key="SETTINGS.LOGGERS", project="p")
    log_summary(first, {"epoch": 4.0, "loss": 0.5}, 4, tmp_path, ["csv"], key="SETTINGS.LOGGERS", project="p")
    rows = _rows(tmp_path / "logs" / "version_0" / "metrics.csv")  # on disk after each row, not at the end
    assert [(row["step"], float(row["loss"])) for row in rows] == [("2", 0.75), ("4", 0.5)]
    del first
    gc.collect()
    log_summary(second, {"epoch": 2.0, "loss": 0.25}, 2, tmp_path, [], key="SETTINGS.LOGGERS", project="p")
    assert [float(row["loss"]) for row in _rows(tmp_path / "logs" / "version_1" / "metrics.csv")] == [0.25]
