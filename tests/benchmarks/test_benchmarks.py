"""The benchmark code itself, at toy sizes: it runs, and its measurements mean what they say.

``make bench`` takes about an hour on 2 CPU cores; these tests keep its pieces from rotting
between runs (timings are not asserted, only that they are measured and consistent).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import interpolation_ablation as ablation
from benchmarks import interpolation_densify as densify
from benchmarks import interpolation_throughput as throughput
from benchmarks import run_all
from benchmarks.reference_step import ReferenceTrainer
from retina_data.phantom import PhantomConfig, make_eye
from retina_data.preprocessing import minmax_normalise_eye


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def toy_eye():
    return make_eye(PhantomConfig(n_subjects=1, shape=(32, 16, 9)), 0, "OD")


def test_throughput_rates_paper_and_fast_mode_against_the_reference() -> None:
    workload = throughput.Workload(bscan=(16, 32), eyes=2, slices=4)
    results = throughput.run(compile_step=False, rounds=2, workload=workload)
    assert set(results) == {"reference", "paper_eager", "fast_eager"}
    assert results["reference"]["ratio"] == 1.0
    # paper mode's step is the reference's update: one whole B-scan; fast mode draws 65,536 points in patches
    assert results["reference"]["points"] == results["paper_eager"]["points"] == 16 * 32
    assert results["fast_eager"]["points"] == 65536
    for result in results.values():
        assert result["rate"] > 0 and result["spread"] >= 1.0 and np.isfinite(result["ratio"])


def test_paper_and_fast_steps_train_the_configs_networks() -> None:
    workload = throughput.Workload(bscan=(16, 32), eyes=2, slices=4)
    paper = throughput.our_trainer("paper", False, workload)
    fast = throughput.our_trainer("fast", False, workload)
    # paper: two WIRE linears per layer, [x, y, z, SLO] + code (first) or + h (later), 132 -> 128 each:
    # 6 x 2 x (132 x 128 + 128) + heads (128 + 1) + (128 x 13 + 13) = 206,094.
    # fast: one shared linear, the code into every layer: 132 -> 128 first, 260 -> 128 later:
    # (132 x 128 + 128) + 5 x (260 x 128 + 128) + 1,806 = 185,870
    paper_weights = sum(p.numel() for p in paper.network.parameters())
    fast_weights = sum(p.numel() for p in fast.network.parameters())
    assert (paper_weights, fast_weights) == (206_094, 185_870)
    for trainer in (paper, fast):
        assert torch.isfinite(trainer.step()).all()


def test_the_reference_step_trains_on_one_whole_bscan() -> None:
    trainer = ReferenceTrainer(*throughput.Workload(bscan=(8, 12), eyes=2, slices=3).data())
    assert trainer.points_per_step == 8 * 12
    losses = [trainer.step(0, 1) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_gap_psnr_scores_only_the_bscans_that_were_not_input(toy_eye) -> None:
    prediction = toy_eye.oct + 0.1  # 20 dB everywhere ...
    prediction[:, :, ::4] = 0.0  # ... except on the inputs, which must not count
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
    rates = {
        "reference": {"rate": 1000.0, "ratio": 1.0, "spread": 1.1, "points": 114080},
        "paper_eager": {"rate": 3000.0, "ratio": 3.0, "spread": 1.3, "points": 114080},
        "fast_eager": {"rate": 4000.0, "ratio": 4.0, "spread": 1.2, "points": 65536},
    }
    monkeypatch.setattr(throughput, "run", lambda compile_step, workload: rates)
    lines = run_all.throughput_section(False, torch.device("cpu"))
    assert lines[0].startswith("## 1. Training throughput on the CPU")
    assert any("reference re-creation" in line and "| 114,080 | 1,000 | 1.00x | 1.10 |" in line for line in lines)
    assert any("paper mode" in line and "| 114,080 | 3,000 | 3.00x | 1.30 |" in line for line in lines)
    assert any("fast mode" in line and "| 65,536 | 4,000 | 4.00x | 1.20 |" in line for line in lines)


def test_gpu_throughput_section_names_the_gpu_and_its_precision(monkeypatch) -> None:
    seen = {}

    def fake_run(compile_step, workload):
        seen["device"] = workload.device
        return {
            "reference": {"rate": 1e6, "ratio": 1.0, "spread": 1.0, "points": 114080},
            "fast_compiled": {"rate": 2e7, "ratio": 20.0, "spread": 1.1, "points": 65536},
        }

    monkeypatch.setattr(throughput, "run", fake_run)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    monkeypatch.setattr(run_all, "precision_label", lambda device, enabled: "bf16 autocast")
    lines = run_all.throughput_section(True, torch.device("cuda", 0))
    assert seen["device"] == torch.device("cuda", 0)
    assert lines[0].startswith("## 1g. Training throughput on the GPU Test GPU")
    assert "whole batches, bf16 autocast" in lines[2]
    assert any("fast mode, torch.compile" in line and "| 20.00x |" in line for line in lines)


# --- the ablation ---------------------------------------------------------------------------


def test_every_key_the_fast_config_changes_is_ablated_or_explained() -> None:
    differing = ablation.differing_keys()
    chosen = ablation.improvements()
    ablated = [key for changes in chosen.values() for key in changes]
    assert len(ablated) == len(set(ablated))
    assert set(ablated) | set(ablation.NO_EFFECT) == set(differing)
    assert not set(ablated) & set(ablation.NO_EFFECT)
    assert {"TEST.KEEP", "TEST.SAMPLING", "TEST.LR_SCHEDULE"} <= set(chosen[next(n for n in chosen if "test fit" in n)])
    assert chosen["POS_ENCODING.WIRE.SHARED_LINEAR = True"] == {"POS_ENCODING.WIRE.SHARED_LINEAR": True}
    for changes in chosen.values():  # the values are the fast config's
        assert all(differing[key] == value for key, value in changes.items())


def test_the_keys_left_out_cannot_change_the_ablation(toy_eye) -> None:
    paper = ablation.variant_config({}, ablation.Scale())
    # phantom eyes are already min-max normalised, so MINMAX_NORMALISE changes nothing
    for eye in (toy_eye, toy_eye.subsample(2)):
        normalised = minmax_normalise_eye(eye)
        assert np.array_equal(normalised.oct, eye.oct) and np.array_equal(normalised.slo, eye.slo)
    # early stopping cannot fire before its start epoch
    assert paper.TRAINING.EARLY_STOPPING_START_EPOCH >= paper.TRAINING.TOTAL_EPOCHS
    assert not paper.MODEL.MODULATION and paper.POS_ENCODING.TYPE == "None" and paper.MODEL.ACTIVATION == "WIRE"


def test_variant_configs_scale_epochs_and_points_per_step() -> None:
    scale = ablation.Scale()
    ratio = 48 * 32 / (230 * 496)
    paper = ablation.variant_config({}, scale)
    assert paper.TRAINING.SAMPLING == "bscan" and paper.TEST.SAMPLING == "bscan"
    assert (paper.TRAINING.TOTAL_EPOCHS, paper.TEST.TOTAL_EPOCHS, paper.SETTINGS.COMPILE) == (2, 5, False)
    assert paper.PREPROCESSING.SLICE_COORD_SCALE == 0.1 and not paper.POS_ENCODING.WIRE.SHARED_LINEAR
    fast = ablation.variant_config({k: v for c in ablation.improvements().values() for k, v in c.items()}, scale)
    assert fast.TRAINING.SAMPLING == "patches" and fast.TRAINING.BATCH_POINTS == round(65536 * ratio) == 882
    assert fast.TEST.TOTAL_EPOCHS == 100 and fast.TEST.BATCH_POINTS == 256  # 8192 x ratio is below one patch
    assert fast.TEST.KEEP == "last" and fast.MODEL.LATENT_TO_ALL_LAYERS and fast.POS_ENCODING.WIRE.SHARED_LINEAR


def test_ablation_held_out_eyes_belong_to_subjects_the_population_never_saw() -> None:
    population, held_out = ablation.phantom_eyes(ablation.Scale(shape=(32, 8, 3), train_subjects=2, test_subjects=1))
    assert [eye.eye_id for eye in population] == ["sub001_OD", "sub001_OS", "sub002_OD", "sub002_OS"]
    assert [eye.eye_id for eye in held_out] == ["sub003_OD", "sub003_OS"]


def test_ablation_runs_every_variant_at_toy_size() -> None:
    scale = ablation.Scale(
        shape=(32, 16, 5), factor=2, train_subjects=1, test_subjects=1, train_epochs=1, test_epochs=1
    )
    results = ablation.run(scale)
    rows = results["rows"]
    assert len(rows) == 2 + len(ablation.improvements())
    assert rows[0]["keys"] == [] and rows[-1]["keys"] == sorted(
        ablation.differing_keys().keys() - ablation.NO_EFFECT.keys()
    )
    for row in rows:
        assert all(np.isfinite(row[column]) for column in ("psnr", "dice", "paper_psnr", "paper_dice"))
        assert 0 <= row["dice"] <= 1 and 0 <= row["paper_dice"] <= 100
        assert row["total_s"] >= row["train_s"] + row["fit_s"] > 0
    assert len({row["psnr"] for row in rows}) > 1  # the improvements change the outcome


def test_ablation_table_has_a_row_per_variant(monkeypatch) -> None:
    rows = [
        {
            "variant": "paper mode (geninr_config.yaml)",
            "keys": [],
            "psnr": 18.5,
            "dice": 0.61,
            "paper_psnr": 17.25,
            "paper_dice": 70.04,
            "train_s": 100.0,
            "fit_s": 20.0,
            "total_s": 121.0,
        },
        {
            "variant": "+ short fit",
            "keys": ["TEST.KEEP", "TEST.SAMPLING"],
            "psnr": 18.0,
            "dice": 0.6,
            "paper_psnr": 17.0,
            "paper_dice": 69.0,
            "train_s": 100.0,
            "fit_s": 2.0,
            "total_s": 103.0,
        },
    ]
    monkeypatch.setattr(
        ablation, "run", lambda: {"rows": rows, "scale": ablation.Scale(), "no_effect": {"MODEL.FILM": "no FiLM"}}
    )
    lines = run_all.ablation_section()
    assert lines[0].startswith("## 4. Ablation")
    assert "| paper mode (geninr_config.yaml) | 18.50 | 0.610 | 17.25 | 70.0 | 100 | 20 | 121 |" in lines
    assert "- short fit: `TEST.KEEP`, `TEST.SAMPLING`" in lines and "- `MODEL.FILM`: no FiLM" in lines


def test_an_ablation_variant_whose_training_was_stopped_is_not_scored(monkeypatch) -> None:
    scale = ablation.Scale(shape=(32, 8, 3), train_subjects=1, test_subjects=1, train_epochs=1, test_epochs=1)
    config = ablation.variant_config({}, scale)
    population, held_out = ablation.phantom_eyes(scale)
    monkeypatch.setattr(ablation, "train_population", lambda experiment, data: (None, None, False))
    monkeypatch.setattr(ablation, "predict_gen_inr", lambda *args: pytest.fail("a stopped training was scored"))
    with pytest.raises(KeyboardInterrupt):
        ablation.run_variant(config, ablation.fold_data(config, population, held_out, scale.factor))


def test_atlas_ablation_varies_exactly_the_keys_the_fast_config_changes() -> None:
    """The keys fit_GINR_Atlas_fast.yml changes (read off the two files by hand), grouped or alone."""
    from benchmarks import atlas_ablation

    changed = {
        "TRAINING.LATENT_CODE.INIT",
        "TRAINING.SHUFFLE",
        "TRAINING.SEG_WEIGHT",
        "TRAINING.SEG_LOSS",
        "TRAINING.REG_TYPE",
        "TRAINING.LATENT_WEIGHT",
        "DISP_MODEL.FILM",
        "DISP_MODEL.SKIP_LAST_LAYER",
        "ATLAS_MODEL.NUM_LAYERS",
        "ATLAS_MODEL.LINEAR_LAST",
        "ATLAS_MODEL.INTENSITY_SIGMOID",
        "ATLAS_PRETRAINING.SEG_WEIGHT",
        "DATA.FLIP_OS",
        "RUNTIME.PRECISION",
    }
    assert set(atlas_ablation.differing_keys()) == changed
    chosen = atlas_ablation.improvements()
    varied = [key for changes in chosen.values() for key in changes]
    assert sorted(varied) == sorted(changed - set(atlas_ablation.NO_EFFECT))
    assert chosen["cross-entropy label loss at weight 0.1 (training and pretraining)"] == {
        "TRAINING.SEG_WEIGHT": 0.1,
        "TRAINING.SEG_LOSS": "ce",
        "ATLAS_PRETRAINING.SEG_WEIGHT": 0.1,
    }
    assert chosen["DATA.FLIP_OS = True"] == {"DATA.FLIP_OS": True}


def test_atlas_ablation_variant_is_the_paper_config_at_the_demo_scale(tmp_path) -> None:
    from benchmarks import atlas_ablation

    scale = atlas_ablation.Scale(train_epochs=3, pretrain_epochs=2)
    paper = atlas_ablation.variant_config({}, scale, tmp_path, tmp_path / "folds.yml")
    # the varied keys keep the paper's values, the scale comes from demo_atlas.yml and Scale
    assert (paper.DISP_MODEL.FILM, paper.TRAINING.SEG_LOSS, paper.ATLAS_PRETRAINING.SEG_WEIGHT) == (
        "reference",
        "bce",
        1.0,
    )
    assert (paper.ATLAS_MODEL.HIDDEN_SIZE, paper.TRAINING.LATENT_CODE.SIZE, paper.DATA.SUBSMPL_FACTOR) == (64, 32, 1)
    assert (paper.TRAINING.TOTAL_EPOCHS, paper.ATLAS_PRETRAINING.TOTAL_EPOCHS) == (3, 2)
    assert paper.TRAINING.LEARNING_RATE == 0.001 and paper.EVALUATION.BASELINES == []
    ours = atlas_ablation.variant_config({"DISP_MODEL.FILM": "pigan"}, scale, tmp_path, tmp_path / "folds.yml", seed=4)
    assert ours.DISP_MODEL.FILM == "pigan" and ours.DISP_MODEL.SKIP_LAST_LAYER and ours.SETTINGS.SEED == 4


@pytest.mark.slow
def test_atlas_ablation_runs_every_variant_at_toy_size() -> None:
    from benchmarks import atlas_ablation

    scale = atlas_ablation.Scale(
        shape=(32, 8, 16), train_subjects=2, test_subjects=1, train_epochs=1, pretrain_epochs=1, seeds=(0,)
    )
    results = atlas_ablation.run(scale)
    rows = results["rows"]
    assert next(row["variant"] for row in rows) == "paper mode (fit_GINR_Atlas_base.yml)" and rows[0]["keys"] == []
    assert len(rows) == len(atlas_ablation.improvements()) + 2
    assert rows[-1]["keys"] == sorted(key for row in rows[1:-1] for key in row["keys"])
    for row in rows:
        assert 0.0 <= row["dice"] <= 1.0 and 0.0 <= row["paper_dice"] <= 1.0 and row["dice_seed_spread"] == 0.0
        assert row["total_s"] >= row["train_s"] > 0
    lines = run_all.atlas_ablation_lines(results, 1.0)
    assert sum(line.startswith("| ") for line in lines) == len(rows) + 1
