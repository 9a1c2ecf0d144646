"""The densify benchmark compares the reference's test-time fit with our fast config's."""

from __future__ import annotations

from anisotropic_interpolation.config import load_experiment_config
from benchmarks import interpolation_densify as densify
from benchmarks.interpolation_throughput import CONFIG_DIR, PAPER_CONFIG


def test_the_reference_schedule_is_the_paper_configs_test_fit() -> None:
    assert densify._config(test=densify.REFERENCE_SCHEDULE).TEST == load_experiment_config(PAPER_CONFIG).TEST


def test_our_schedule_is_the_fast_configs_test_fit() -> None:
    fast = load_experiment_config(CONFIG_DIR / "geninr_fast.yaml").TEST
    assert densify._config(test=densify.OUR_SCHEDULE).TEST == fast


def test_the_population_is_trained_on_patches_for_a_fixed_budget() -> None:
    training = densify._config(densify.POPULATION).TRAINING
    assert (training.SAMPLING, training.EARLY_STOPPING_PATIENCE, training.TOTAL_EPOCHS) == ("patches", 0, 60)
