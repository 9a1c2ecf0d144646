"""The entry scripts end to end on a tiny phantom: outputs, refusal of old results, clear data errors."""

from __future__ import annotations

import csv
import functools
import json
import math
import operator
from pathlib import Path

import pytest
import SimpleITK as sitk

from atlas_registration import GINR_Atlas_base, GINR_Atlas_resolution_inference
from atlas_registration.datasets.label_mapping import LabelMapping
from retina_data.errors import DataError, OutputExistsError
from retina_data.folds import write_folds
from retina_data.label_tables import ITKSNAP_FILE, SLICER_FILE, read_itksnap_labels, read_slicer_colours
from retina_data.phantom import PhantomConfig, write_phantom

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "atlas" / "demo_atlas.yml"
TINY = [
    "TRAINING.TOTAL_EPOCHS=2",
    "TRAINING.BATCH_SIZE=2",
    "TRAINING.LATENT_CODE.SIZE=4",
    "TRAINING.REG_POINTS=32",
    "TRAINING.VAL_EVERY=1",
    "TRAINING.CHECKPOINT_EVERY=1",
    "TEST.TOTAL_EPOCHS=2",
    "TEST.STEPS_PER_EPOCH=1",
    "DISP_MODEL.HIDDEN_SIZE=8",
    "DISP_MODEL.NUM_LAYERS=2",
    "ATLAS_MODEL.HIDDEN_SIZE=16",
    "ATLAS_MODEL.NUM_LAYERS=2",
    "ATLAS_PRETRAINING.TOTAL_EPOCHS=2",
    "ATLAS_PRETRAINING.STEPS_PER_EPOCH=2",
    "ATLAS_PRETRAINING.POINTS_PER_STEP=512",
    "DATA.PATCH_SIZE=[8, 4, 8]",
    "DATA.SUBSMPL_FACTOR=1",
    "EVALUATION.IDIR_EPOCHS=2",
    "EVALUATION.IDIR_HIDDEN_SIZE=8",
    "EVALUATION.RESOLUTION_FACTORS=[1, 8]",
    "EVALUATION.ATLAS_SHAPES=[[16, 8, 8]]",
    "EVALUATION.CLASSICAL_ITERATIONS=2",
    "EVALUATION.REFERENCE_BASELINE_EPOCHS=2",
    "RUNTIME.ACCELERATOR=cpu",
    "RUNTIME.DEVICES=1",
    "EVALUATION.BASELINES=['atlas', 'reference_affine', 'reference_inr', 'affine', 'idir', 'bspline']",
]


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("atlas_phantom")
    write_phantom(root, PhantomConfig(n_subjects=3, shape=(32, 8, 16), seed=1), progress=False)
    write_folds(root / "folds.yml", {0: {"TRAIN": ["sub001", "sub002"], "TEST": ["sub003"]}})
    return root


def _args(tree: Path, out: Path, *extra: str) -> list[str]:
    data = [f"SETTINGS.DATA_DIR={tree}", f"SETTINGS.FOLD_FILE={tree / 'folds.yml'}"]
    return [
        str(CONFIG),
        "--output",
        str(out),
        *functools.reduce(operator.iadd, (["--set", s] for s in data + TINY), []),
        *extra,
    ]


@pytest.mark.slow
def test_pipeline_runs_under_bf16_mixed_precision(tiny_tree, tmp_path):
    """bf16-mixed is the default on GPUs with native bf16; its autocast path runs on the CPU too."""
    out = tmp_path / "bf16"
    assert GINR_Atlas_base.main(_args(tiny_tree, out, "--set", "RUNTIME.PRECISION=bf16-mixed")) == 0
    assert json.loads((out / "run_info.json").read_text())["precision"] == "bf16-mixed"
    with open(out / "results" / "metrics_all.csv") as handle:
        ginr = [row for row in csv.DictReader(handle) if row["method"] == "ginr"]
    assert ginr and all(0.0 <= float(row["dice_mean"]) <= 1.0 for row in ginr)
    assert all(math.isfinite(float(row["pct_nonpositive_jacobian"])) for row in ginr)


@pytest.mark.slow
def test_pipeline_writes_atlas_volumes_tables_and_eye_outputs(tiny_tree, tmp_path):
    out = tmp_path / "run"
    assert GINR_Atlas_base.main(_args(tiny_tree, out)) == 0
    for name in (
        "config.yaml",
        "run_info.json",
        "atlas/median/atlas_labels.nii.gz",
        "atlas/inr_32x8x16/atlas_intensity.nii.gz",
        "atlas/inr_16x8x8/atlas_labels.nii.gz",
        "checkpoints/registration/last.ckpt",
        "results/summary.md",
        "results/resolution.md",
        "eyes/sub003_OS/displacement_mm.nii.gz",
        "eyes/sub003_OS/eye_in_atlas.nii.gz",
    ):
        assert (out / name).is_file(), name
    # the ITK-SNAP / Slicer tables of the atlas's 10 classes beside every label volume written
    for folder in ("atlas/median", "atlas/inr_32x8x16", "atlas/inr_16x8x8", "eyes/sub003_OS"):
        labels = read_itksnap_labels(out / folder / ITKSNAP_FILE)
        assert [labels[k][0] for k in range(10)] == list(LabelMapping.from_config(None, None).names), folder
        assert len(read_slicer_colours(out / folder / SLICER_FILE)) == 10, folder
    field = sitk.ReadImage(str(out / "eyes/sub003_OS/displacement_mm.nii.gz"))
    eye = sitk.ReadImage(str(out / "eyes/sub003_OS/atlas_in_eye.nii.gz"))
    assert field.GetNumberOfComponentsPerPixel() == 3 and field.GetSize() == eye.GetSize()
    assert field.GetDirection() == pytest.approx(eye.GetDirection()) and field.GetOrigin() == pytest.approx(
        eye.GetOrigin()
    )
    with open(out / "results" / "metrics_all.csv") as handle:
        rows = list(csv.DictReader(handle))
    methods = {(row["method"], row["factor"]) for row in rows}
    baselines = {
        ("atlas", "1"),
        ("reference_affine", "1"),
        ("reference_inr", "1"),
        ("affine", "1"),
        ("idir", "1"),
        ("bspline", "1"),
    }
    assert methods == {("ginr", "1"), ("ginr", "8")} | baselines
    assert all(0.0 <= float(row["dice_mean"]) <= 1.0 for row in rows)
    with open(out / "results" / "metrics_all_thickness.csv") as handle:  # ETDRS errors of every registration
        thickness = list(csv.DictReader(handle))
    assert {(row["method"], row["factor"]) for row in thickness} == methods
    assert {row["group"] for row in thickness} == {"retina", *LabelMapping.default().names[1:]}
    assert all(float(row["C"]) >= 0.0 for row in thickness) and (out / "results" / "summary_thickness.md").is_file()
    with open(out / "results" / "summary_reference.csv") as handle:
        reference = {(row["method"], row["factor"]): row for row in csv.DictReader(handle)}
    assert set(reference) == {("ginr", "1"), ("ginr", "8")} | baselines
    # the paper's resolution rows are scored on the B-scans fitted: 16 and 16 / 8 = 2
    assert float(reference[("ginr", "1")]["bscans_mean"]) == 16 and float(reference[("ginr", "8")]["bscans_mean"]) == 2
    assert all(
        0.0 <= float(row["dice_mean_mean"]) <= 1.0 and float(row["assd_um_mean"]) >= 0.0 for row in reference.values()
    )
    assert (out / "results" / "metrics_reference" / "sub003_OS.csv").is_file()

    resolution = tmp_path / "resolution"
    checkpoint = out / "checkpoints" / "registration" / "last.ckpt"
    assert GINR_Atlas_resolution_inference.main(_args(tiny_tree, resolution, "--checkpoint", str(checkpoint))) == 0
    assert (resolution / "results" / "resolution.md").is_file()


def test_existing_results_are_refused_without_overwrite_or_resume(tiny_tree, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.csv").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        GINR_Atlas_base.main(_args(tiny_tree, out))


def test_subject_missing_on_disk_is_named(tiny_tree, tmp_path):
    folds = tmp_path / "folds.yml"
    write_folds(folds, {0: {"TRAIN": ["sub001", "sub999"], "TEST": ["sub003"]}})
    args = _args(tiny_tree, tmp_path / "run", "--set", f"SETTINGS.FOLD_FILE={folds}")
    with pytest.raises(DataError, match="sub999"):
        GINR_Atlas_base.main(args)


def test_overwrite_removes_every_output_of_the_old_run_and_nothing_else(tiny_tree, tmp_path):
    """An old run's eye folders, atlases and tables do not survive --overwrite (an eye of another fold
    would otherwise sit beside the new run's); a file the run never writes is left alone."""
    from atlas_registration import pipeline
    from atlas_registration.config import load_atlas_config

    out = tmp_path / "run"
    stale = [
        out / "eyes" / "sub009_OD" / "warped_oct.nii.gz",
        out / "results" / "summary.md",
        out / "atlas" / "median" / "atlas_oct.nii.gz",
        out / "checkpoints" / "registration" / "last.ckpt",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old run")
    (out / "notes.txt").write_text("mine")
    data = [f"SETTINGS.DATA_DIR={tiny_tree}", f"SETTINGS.FOLD_FILE={tiny_tree / 'folds.yml'}"]
    cfg = load_atlas_config(CONFIG, data + TINY)
    pipeline.start_run(cfg, pipeline.load_fold(cfg), "GINR_Atlas_base.py", str(out), overwrite=True, resume=False)
    assert not any(path.exists() for path in stale)
    assert (out / "notes.txt").read_text() == "mine" and (out / "config.yaml").is_file()


def test_pretraining_stopped_while_writing_its_atlas_exits_130_with_the_notice(
    tiny_tree, tmp_path, monkeypatch, capsys
):
    """Ctrl-C (or SIGTERM, turned into the same stop) after the atlas INR is trained, while its volumes
    are written: the notice and exit 130, as in the other scripts' evaluations (before: a traceback,
    or 143)."""
    from atlas_registration import pretrain_atlas

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_atlas, "write_atlas_volumes", interrupted)
    assert pretrain_atlas.main(_args(tiny_tree, tmp_path / "run")) == 130
    assert "notice: stopped during the evaluation; " in capsys.readouterr().err
