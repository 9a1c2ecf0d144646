"""The cohort benchmark: its epoch costs by hand, what a streamed step reads, and the script path."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import cohort_memory
from retina_data.folds import fold_split, read_folds


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """A store of 12 cohort eyes (the 8 phantom eyes, then 4 of them again under new ids)."""
    location = tmp_path_factory.mktemp("cohort") / "cohort.zarr"
    cohort_memory.write_cohort(location, 12)
    return location


BSCAN = 496 * 512 * (4 + 1)
"""Bytes of one paper-shaped B-scan: float32 OCT and uint8 labels."""
SLO = 512 * 512 * 4


def test_an_epoch_of_whole_bscans_reads_every_input_once_with_its_eyes_slo() -> None:
    cost = cohort_memory.epoch_cost(3, "bscan")
    assert cost == {
        "points": 3 * 16 * 496 * 512,
        "steps": 48,
        "bytes": 48 * (BSCAN + SLO),
        "store_bytes": 3 * (16 * BSCAN + SLO),
    }


def test_an_epoch_of_patches_reads_a_whole_bscan_and_slo_per_patch() -> None:
    cost = cohort_memory.epoch_cost(1, "patches")  # 4,063,232 points = 62 steps of 256 patches of 16 x 16
    assert (cost["steps"], cost["bytes"]) == (62, 62 * 256 * (BSCAN + SLO))
    assert cohort_memory.epoch_cost(1, "patches", batch_points=1000, patch=10)["steps"] == 4064  # 1,000 points a step


def test_a_streamed_step_reads_one_bscan_and_slo_per_patch_and_the_same_eyes_kept_read_nothing(cohort) -> None:
    location = cohort
    height, width, depth = cohort_memory.SHAPE
    streamed = cohort_memory.train(location, 12, 2, on_device=False)
    per_step = cohort_memory.BATCH_POINTS // cohort_memory.PATCH**2  # 16 patches, on at most 16 distinct B-scans
    assert 1 <= streamed["bscans_per_step"] <= per_step and streamed["points"] == cohort_memory.BATCH_POINTS
    bscans, total = round(2 * streamed["bscans_per_step"]), round(2 * streamed["bytes_per_step"])
    slo_reads, rest = divmod(total - bscans * height * width * 5, width * depth * 4)  # whole B-scans, whole SLOs
    assert rest == 0 and 1 <= slo_reads <= bscans
    kept = cohort_memory.train(location, 12, 2, on_device=True)
    assert (kept["bscans_per_step"], kept["bytes_per_step"]) == (0, 0) and kept["peak_mib"] >= kept["ready_mib"] > 0


def test_the_script_path_trains_the_first_eyes_and_tests_on_the_first_subject(cohort) -> None:
    name = cohort_memory.write_folds(cohort, 6)
    split = fold_split(read_folds(cohort / name), 0, cohort / name)
    assert split == {"TRAIN": ["cohort00001", "cohort00002", "cohort00003"], "TEST": ["cohort00000"]}
    result = cohort_memory.train_script(cohort, 6, 2, on_device=False)
    assert result["exit"] == 0 and result["peak_mib"] > 0 and result["eyes"] == 6
