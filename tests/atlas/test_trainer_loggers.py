"""The atlas Trainers log through the shared loggers: CSV whatever RUNTIME.LOGGERS lists."""

from __future__ import annotations

from dataclasses import replace

import pytest
from lightning.pytorch.loggers import CSVLogger

from atlas_registration.trainers import build_trainer
from retina_data import run_loggers


@pytest.mark.parametrize("loggers", [[], ["csv"]])
def test_a_training_stage_always_logs_to_csv_under_its_stage_name(tiny_config, tmp_path, loggers):
    trainer = build_trainer(
        replace(tiny_config.RUNTIME, LOGGERS=loggers), tmp_path, "registration", max_epochs=1, checkpoint_every=1
    )
    assert [type(logger) for logger in trainer.loggers] == [CSVLogger]
    assert trainer.loggers[0].log_dir == str(tmp_path / "logs" / "registration" / "version_0")


def test_wandb_asked_for_without_the_package_is_one_notice_naming_the_atlas_key(
    tiny_config, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(run_loggers.OPTIONAL_LOGGERS, "wandb", ("wandb_not_installed_here",))
    monkeypatch.setattr(run_loggers, "_noticed", set())
    runtime = replace(tiny_config.RUNTIME, LOGGERS=["csv", "wandb"])
    for stage in ("pretraining", "registration"):
        trainer = build_trainer(runtime, tmp_path, stage, max_epochs=1, checkpoint_every=1)
        assert [type(logger) for logger in trainer.loggers] == [CSVLogger]
    assert capsys.readouterr().err.splitlines() == [
        (
            "notice: RUNTIME.LOGGERS asks for wandb, which is not installed; logging to CSV without it "
            "(pip install 'resa-oct[wandb]')"
        )
    ]
