"""The benchmark code itself, at toy sizes: it runs, and its measurements mean what they say.

``make bench`` takes about 20 minutes at paper size; these tests keep its pieces from rotting
between runs (timings are not asserted, only that they are measured and consistent).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import interpolation_densify as densify
from benchmarks import interpolation_throughput as throughput
from benchmarks.reference_step import ReferenceTrainer
from retina_data.phantom import PhantomConfig, make_eye


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy_eye():
    return make_eye(PhantomConfig(n_subjects=1, shape=(32, 16, 9)), 0, "OD")


def test_throughput_rates_every_step_against_the_reference() -> None:
    workload = throughput.Workload(bscan=(16, 32), eyes=2, slices=4)
    results = throughput.run(compile_step=False, rounds=2, workload=workload)
    assert set(results) == {"reference", "ours_eager"}
    assert results["reference"]["ratio"] == 1.0
    for result in results.values():
        assert result["rate"] > 0 and result["spread"] >= 1.0 and np.isfinite(result["ratio"])


def test_the_reference_step_trains_on_one_whole_bscan() -> None:
    trainer = ReferenceTrainer(*throughput.Workload(bscan=(8, 12), eyes=2, slices=3).data())
    assert trainer.points_per_step == 8 * 12
    losses = [trainer.step(0, 1) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_gap_psnr_scores_only_the_bscans_that_were_not_input(toy_eye) -> None:
    prediction = toy_eye.oct + 0.1  # 20 dB everywhere ...
    prediction[:, :, ::4] = 0.0     # ... except on the inputs, which must not count
    assert densify.gap_psnr(prediction, toy_eye, 4) == pytest.approx(20.0, abs=1e-4)


def test_timed_densify_fits_predicts_and_times_both(toy_eye) -> None:
    network = densify._network(densify._config())
    schedule = {**densify.OUR_SCHEDULE, "TOTAL_EPOCHS": 3, "BATCH_POINTS": 256}
    result = densify.timed_densify(network, toy_eye, densify._config(test=schedule), 4)
    assert result["epochs"] == 3
    assert result["total_s"] == pytest.approx(result["fit_s"] + result["predict_s"])
    assert 0 < result["fit_s"] and 0 < result["predict_s"] and np.isfinite(result["gap_psnr"])


def test_reference_fit_step_is_timed_on_a_whole_bscan(toy_eye) -> None:
    assert densify.reference_fit_step_seconds(toy_eye.subsample(4), steps=1) > 0
