"""The atlas config: the paper's keys and values load unchanged; mistakes name the key; the
default precision follows the GPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atlas_registration.config import Runtime, load_atlas_config
from atlas_registration.trainers import precision
from retina_data.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "atlas"


def test_paper_config_keeps_the_reference_values():
    cfg = load_atlas_config(CONFIGS / "fit_GINR_Atlas_base.yml")
    assert (cfg.SETTINGS.PROJECT_NAME, cfg.SETTINGS.FOLD) == ("GINR_Atlas_base", 2)
    assert (cfg.TRAINING.LATENT_CODE.SIZE, cfg.TRAINING.LATENT_CODE.INIT_STD) == (128, 0.01)
    assert (cfg.TRAINING.LEARNING_RATE, cfg.TRAINING.TOTAL_EPOCHS, cfg.TRAINING.BATCH_SIZE) == (1e-5, 2000, 1)
    assert (cfg.TEST.LEARNING_RATE, cfg.TEST.TOTAL_EPOCHS) == (3e-5, 100)
    assert (cfg.DISP_MODEL.NUM_LAYERS, cfg.DISP_MODEL.HIDDEN_SIZE, cfg.DISP_MODEL.OMEGA) == (4, 128, 30)
    assert (cfg.ATLAS_MODEL.HIDDEN_SIZE, cfg.ATLAS_MODEL.PATH) == (256, "")
    assert (cfg.DATA.SAMPLE_MODE, cfg.DATA.SUBSMPL_FACTOR, cfg.DATA.PATCH_SIZE) == ("downsample", 8, [231, 62, 64])


def test_demo_config_loads():
    assert load_atlas_config(CONFIGS / "demo_atlas.yml").SETTINGS.FOLD == 0


def test_misspelt_key_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("TRAINING:\n  LERNING_RATE: 0.1\n")
    with pytest.raises(ConfigError, match=r"TRAINING\.LERNING_RATE.*did you mean TRAINING\.LEARNING_RATE"):
        load_atlas_config(path)


def test_patch_size_needs_three_values(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("DATA:\n  PATCH_SIZE: [8, 8]\n")
    with pytest.raises(ConfigError, match="PATCH_SIZE"):
        load_atlas_config(path)


def test_atlas_shapes_need_three_positive_sizes(tmp_path):
    path = tmp_path / "bad.yml"
    for shape in ("[64, 64]", "[64, 64, 32, 2]", "[64, 0, 32]"):
        path.write_text(f"EVALUATION:\n  ATLAS_SHAPES: [[32, 32, 16], {shape}]\n")
        with pytest.raises(ConfigError, match=r"EVALUATION\.ATLAS_SHAPES: expected grids of 3 positive sizes"):
            load_atlas_config(path)
    path.write_text("EVALUATION:\n  ATLAS_SHAPES: [[32, 32, 16]]\n")
    assert load_atlas_config(path).EVALUATION.ATLAS_SHAPES == [[32, 32, 16]]


def test_a_precision_lightning_does_not_know_is_refused_on_load(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("RUNTIME:\n  PRECISION: bf16_mixed\n")
    with pytest.raises(
        ConfigError, match=r"RUNTIME\.PRECISION = 'bf16_mixed': expected one of '32-true', 'bf16-mixed'"
    ):
        load_atlas_config(path)
    assert load_atlas_config(CONFIGS / "demo_atlas.yml", ["RUNTIME.PRECISION=16-mixed"]).RUNTIME.PRECISION == "16-mixed"


@pytest.mark.parametrize(
    ("accelerator", "capability", "asked", "expected"),
    [
        ("cpu", (9, 0), None, "32-true"),
        ("gpu", (9, 0), None, "bf16-mixed"),
        ("auto", (8, 6), None, "bf16-mixed"),
        ("gpu", (7, 0), None, "32-true"),  # no native bf16: fp32 rather than loss-scaled fp16
        ("gpu", (7, 0), "16-mixed", "16-mixed"),  # unless asked for
    ],
)
def test_precision_is_bf16_mixed_only_on_gpus_with_native_bf16(
    monkeypatch, accelerator, capability, asked, expected
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    assert precision(Runtime(ACCELERATOR=accelerator, PRECISION=asked)) == expected


def test_the_paper_config_runs_in_fp32_as_the_reference_and_the_fast_config_in_bf16_where_native(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.version, "hip", None)
    paper = load_atlas_config(CONFIGS / "fit_GINR_Atlas_base.yml", ["RUNTIME.ACCELERATOR=gpu"])
    fast = load_atlas_config(CONFIGS / "fit_GINR_Atlas_fast.yml", ["RUNTIME.ACCELERATOR=gpu"])
    assert precision(paper.RUNTIME) == "32-true" and paper.RUNTIME.MATMUL_PRECISION == "medium"
    assert precision(fast.RUNTIME) == "bf16-mixed"
