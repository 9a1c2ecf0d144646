"""On a CUDA GPU: the same behaviours as on the CPU, with CUDA's own autocast and kernels.

Skipped where no GPU is present (CI and the 2-core development machine): the CPU tests run
the bf16 autocast path on the CPU instead (``tests/interpolation/test_devices_and_precision.py``),
but CUDA's autocast casts some operations differently (``exp``, ``pow`` run in fp32 there).
On a GPU machine: ``make test-gpu``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_configs import tiny_trainer  # on the path through conftest.py

from anisotropic_interpolation import train_test_geninr
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.inference import predict_volume
from anisotropic_interpolation.training import mixed_precision_dtype
from atlas_registration import GINR_Atlas_base
from benchmarks import interpolation_throughput as throughput
from retina_data.folds import FOLDS_FILE, write_folds, write_folds_for_tree
from retina_data.phantom import PhantomConfig, make_eye, write_phantom
from retina_data.precision import native_bf16

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def gpu() -> torch.device:
    return torch.device("cuda", 0)


@pytest.fixture(scope="module")
def eyes():
    phantom = PhantomConfig(n_subjects=2, shape=(32, 16, 16))
    return [make_eye(phantom, subject, side) for subject in range(2) for side in ("OD", "OS")]


def _population(make_config, eyes, device, activation="SIREN", **training):
    """A population network of three eyes (as ``trained`` in tests/interpolation/test_fitting_inference.py)."""
    config = make_config(
        TRAINING={"TOTAL_EPOCHS": 8, "BATCH_POINTS": 1024, "STEPS_PER_EPOCH": 10, **training},
        MODEL={"ACTIVATION": activation, "NUM_LAYERS": 3, "HIDDEN_SIZE": 32},
        TEST={"TOTAL_EPOCHS": 10, "STEPS_PER_EPOCH": 5, "BATCH_POINTS": 1024, "LEARNING_RATE": 0.02},
    )
    trainer = tiny_trainer(config, eyes[:3], device)
    return config, trainer.network, trainer


def test_bf16_is_used_exactly_on_gpus_that_have_it(gpu):
    assert mixed_precision_dtype(gpu) == (torch.bfloat16 if native_bf16(gpu) else None)


@pytest.mark.parametrize("loss", ["MSE", "Combi"])
def test_training_on_the_gpu_lowers_the_loss_and_keeps_fp32_weights(make_config, eyes, gpu, loss):
    _, network, trainer = _population(make_config, eyes, gpu, "WIRE", LOSS_RECON=loss, PATCH_SIZE=8)
    outcome = trainer.train()
    assert outcome.history[-1]["loss"] < outcome.history[0]["loss"]
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in network.parameters())


def test_gpu_prediction_agrees_with_the_cpu(make_config, eyes, gpu):
    _, network, trainer = _population(make_config, eyes, CPU)
    trainer.train()
    code, eye = trainer.codes[0].detach(), eyes[0].subsample(4)
    on_cpu = predict_volume(network, code, eye, eyes[0].bscan_positions, device=CPU)
    network.to(gpu)
    fp32 = predict_volume(network, code, eye, eyes[0].bscan_positions, device=gpu, mixed_precision=False)
    mixed = predict_volume(network, code, eye, eyes[0].bscan_positions, device=gpu)
    assert np.abs(fp32.intensity - on_cpu.intensity).max() < 1e-3
    assert np.abs(mixed.intensity - on_cpu.intensity).max() < 0.05
    assert np.mean(mixed.labels == on_cpu.labels) > 0.97


def test_latent_fit_on_the_gpu_improves_the_held_out_reconstruction(make_config, eyes, gpu):
    config, network, trainer = _population(make_config, eyes, gpu)
    trainer.train()
    held_out = eyes[3].subsample(4)

    def input_mse(code):
        prediction = predict_volume(network, code, held_out, held_out.bscan_positions, device=gpu)
        return float(np.mean((prediction.intensity - held_out.oct) ** 2))

    code = LatentFitter(network, config, gpu).fit([held_out], progress=False)[0]
    assert input_mse(code) < 0.95 * input_mse(torch.zeros(8))


def test_throughput_benchmark_runs_on_the_gpu(gpu):
    workload = throughput.Workload(bscan=(32, 64), eyes=2, slices=4, device=gpu)
    results = throughput.run(compile_step=False, rounds=1, workload=workload)
    assert all(result["rate"] > 0 for result in results.values())


def test_geninr_script_runs_on_gpu_0(tmp_path):
    data = tmp_path / "phantom"
    write_phantom(data, PhantomConfig(n_subjects=3, shape=(32, 16, 16)), progress=False)
    write_folds_for_tree(data, data / FOLDS_FILE, k=3)
    settings = [
        f"SETTINGS.IMG_DIR={data}",
        "TRAINING.TOTAL_EPOCHS=2",
        "TRAINING.STEPS_PER_EPOCH=3",
        "TEST.TOTAL_EPOCHS=2",
        "EVALUATION.FIGURES=false",
        "EVALUATION.SINGLE_INR_BASELINE=false",
    ]
    out = tmp_path / "run"
    args = [
        str(ROOT / "configs" / "interpolation" / "demo_geninr.yaml"),
        "--gpu",
        "0",
        "--output",
        str(out),
        "--quiet",
        *[item for setting in settings for item in ("--set", setting)],
    ]
    assert train_test_geninr.main(args) == 0
    record = json.loads((out / "run_info.json").read_text())
    assert record["device"] == "cuda:0"
    assert record["precision"] == ("bf16 autocast" if native_bf16("cuda:0") else "fp32")


def test_atlas_pipeline_runs_on_the_gpu_in_its_default_precision(tmp_path):
    data = tmp_path / "atlas_phantom"
    write_phantom(data, PhantomConfig(n_subjects=3, shape=(32, 8, 16), seed=1), progress=False)
    write_folds(data / "folds.yml", {0: {"TRAIN": ["sub001", "sub002"], "TEST": ["sub003"]}})
    tiny = [
        "TRAINING.TOTAL_EPOCHS=2",
        "TRAINING.BATCH_SIZE=2",
        "TRAINING.LATENT_CODE.SIZE=4",
        "TEST.TOTAL_EPOCHS=2",
        "DISP_MODEL.HIDDEN_SIZE=8",
        "ATLAS_MODEL.HIDDEN_SIZE=16",
        "ATLAS_PRETRAINING.TOTAL_EPOCHS=2",
        "DATA.PATCH_SIZE=[8, 4, 8]",
        "DATA.SUBSMPL_FACTOR=1",
        "EVALUATION.IDIR_EPOCHS=2",
        "EVALUATION.RESOLUTION_FACTORS=[1]",
        "EVALUATION.ATLAS_SHAPES=[[16, 8, 8]]",
        "EVALUATION.CLASSICAL_ITERATIONS=2",
        "RUNTIME.ACCELERATOR=gpu",
        "RUNTIME.DEVICES=1",
        f"SETTINGS.DATA_DIR={data}",
        f"SETTINGS.FOLD_FILE={data / 'folds.yml'}",
    ]
    out = tmp_path / "run"
    args = [
        str(ROOT / "configs" / "atlas" / "demo_atlas.yml"),
        "--output",
        str(out),
        *[item for setting in tiny for item in ("--set", setting)],
    ]
    assert GINR_Atlas_base.main(args) == 0
    record = json.loads((out / "run_info.json").read_text())
    assert record["device"].startswith("cuda")
    assert record["precision"] == ("bf16-mixed" if native_bf16("cuda") else "32-true")
    with open(out / "results" / "metrics_all.csv") as handle:
        ginr = [row for row in csv.DictReader(handle) if row["method"] == "ginr"]
    assert ginr and all(0.0 <= float(row["dice_mean"]) <= 1.0 for row in ginr)
