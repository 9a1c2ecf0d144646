"""Config schema: the paper's configs load unchanged; mistakes are refused with a named key."""

from __future__ import annotations

from pathlib import Path

import pytest

from anisotropic_interpolation.config import load_experiment_config
from retina_data.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "interpolation"


@pytest.mark.parametrize(
    "name", ["geninr_config.yaml", "singleinr_config.yaml", "demo_geninr.yaml", "demo_singleinr.yaml"]
)
def test_shipped_configs_load(name: str) -> None:
    load_experiment_config(CONFIGS / name)


def test_paper_geninr_config_keeps_the_reference_values() -> None:
    config = load_experiment_config(CONFIGS / "geninr_config.yaml")
    assert (config.MODEL.ACTIVATION, config.MODEL.NUM_LAYERS, config.MODEL.HIDDEN_SIZE) == ("WIRE", 6, 128)
    assert (config.TRAINING.LATENT_CODE.SIZE, config.TRAINING.TOTAL_EPOCHS, config.TEST.TOTAL_EPOCHS) == (
        128,
        1500,
        200,
    )


def test_unknown_activation_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"MODEL.ACTIVATION = 'Siren'.*did you mean 'SIREN'"):
        load_experiment_config(CONFIGS / "geninr_config.yaml", ["MODEL.ACTIVATION=Siren"])


def test_hashgrid_without_its_block_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("POS_ENCODING:\n  TYPE: 'Hashgrid'\n")
    with pytest.raises(ConfigError, match=r"needs a POS_ENCODING.HASHGRID block"):
        load_experiment_config(path)


def test_out_of_range_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"MODEL.DROPOUT = 1.5: expected a value >= 0.0 and < 1"):
        load_experiment_config(CONFIGS / "geninr_config.yaml", ["MODEL.DROPOUT=1.5"])


def test_modulation_needs_a_plain_siren() -> None:
    with pytest.raises(ConfigError, match=r"MODEL.MODULATION = true"):
        load_experiment_config(CONFIGS / "geninr_config.yaml", ["MODEL.MODULATION=true"])


def test_ssim_loss_draws_patches_and_mse_single_points() -> None:
    combi = load_experiment_config(CONFIGS / "geninr_config.yaml")
    mse = load_experiment_config(CONFIGS / "geninr_config.yaml", ["TRAINING.LOSS_RECON=MSE"])
    assert (combi.patch_size, mse.patch_size) == (16, 1)


def test_the_paper_configs_compute_in_fp32_and_the_fast_ones_may_use_bf16():
    for name in ("geninr_config.yaml", "singleinr_config.yaml"):
        assert load_experiment_config(CONFIGS / name).TRAINING.MIXED_PRECISION is False
    for name in ("geninr_fast.yaml", "singleinr_fast.yaml"):
        assert load_experiment_config(CONFIGS / name).TRAINING.MIXED_PRECISION is True
