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
from benchmarks import run_all
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


def test_run_all_writes_the_chosen_sections_and_says_when_there_is_no_gpu(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run_all, "memory_section", lambda: ["## 3. memory", "peak 1 GiB", ""])
    for sections in (["memory"], ["memory", "throughput-gpu"]):
        output = tmp_path / f"results_{len(sections)}.md"
        assert run_all.main(["--sections", *sections, "--output", str(output)]) == 0
        text = output.read_text()
        assert "No GPU on this machine" in text and "## 3. memory" in text and "peak 1 GiB" in text
        assert "Training throughput" not in text


def test_throughput_table_names_every_step_with_its_ratio(monkeypatch) -> None:
    rates = {"reference": {"rate": 1000.0, "ratio": 1.0, "spread": 1.1},
             "ours_eager": {"rate": 4000.0, "ratio": 4.0, "spread": 1.2}}
    monkeypatch.setattr(throughput, "run", lambda compile_step, workload: rates)
    lines = run_all.throughput_section(False, torch.device("cpu"))
    assert lines[0].startswith("## 1. Training throughput on the CPU")
    assert any("reference re-creation" in line and "| 1,000 | 1.00x | 1.10 |" in line for line in lines)
    assert any("ours, eager" in line and "| 4,000 | 4.00x | 1.20 |" in line for line in lines)
