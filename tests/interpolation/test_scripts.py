"""End to end: both entry scripts on a tiny phantom tree (few epochs, small shapes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anisotropic_interpolation import predict, train_test_geninr, train_test_singleinr
from anisotropic_interpolation.config import load_experiment_config
from anisotropic_interpolation.pipeline import MODEL_FILE, config_overrides, experiment_parser, load_model, run_folder
from retina_data.errors import ConfigError, DataError, OutputExistsError
from retina_data.folds import FOLDS_FILE, write_folds_for_tree
from retina_data.phantom import PhantomConfig, write_phantom
from retina_data.tree import read_eye

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "interpolation"
TINY = [
    "PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR=4",
    "TRAINING.TOTAL_EPOCHS=2",
    "TRAINING.EPOCHS_TIL_SUMMARY=1",
    "TRAINING.STEPS_PER_EPOCH=3",
    "TRAINING.BATCH_POINTS=512",
    "MODEL.NUM_LAYERS=2",
    "MODEL.HIDDEN_SIZE=16",
    "TEST.TOTAL_EPOCHS=2",
    "TEST.STEPS_PER_EPOCH=2",
    "TEST.BATCH_POINTS=512",
    "EVALUATION.FIGURES=false",
]


@pytest.fixture(scope="module")
def phantom_tree(tmp_path_factory) -> Path:
    """Three subjects of ``[32, 16, 16]`` with a two-fold split."""
    data_dir = tmp_path_factory.mktemp("phantom")
    write_phantom(data_dir, PhantomConfig(n_subjects=3, shape=(32, 16, 16)), progress=False)
    write_folds_for_tree(data_dir, data_dir / FOLDS_FILE, k=3)
    return data_dir


def _args(config: str, data_dir: Path, out: Path, *extra: str) -> list[str]:
    settings = [f"SETTINGS.IMG_DIR={data_dir}", "SETTINGS.FOLD=0", *TINY]
    return [
        str(CONFIGS / config),
        "--gpu",
        "-1",
        "--output",
        str(out),
        "--quiet",
        *[item for override in settings for item in ("--set", override)],
        *extra,
    ]


@pytest.mark.slow
def test_geninr_script_writes_model_evaluation_and_resolved_config(phantom_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    extra = [
        "--set",
        "EVALUATION.SINGLE_INR_BASELINE=true",
        "--set",
        "EVALUATION.SINGLE_INR_CONFIG=demo_singleinr.yaml",
        "--set",
        "EVALUATION.SINGLE_INR_OVERRIDES=[TRAINING.TOTAL_EPOCHS=1, MODEL.HIDDEN_SIZE=16]",
    ]
    assert train_test_geninr.main(_args("demo_geninr.yaml", phantom_tree, out, *extra)) == 0
    assert "TOTAL_EPOCHS: 2" in (out / "config.yaml").read_text()
    for name in (
        "model.pt",
        "run_info.json",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "evaluation/summary.md",
        "evaluation/summary.csv",
        "evaluation/summary_reference.md",
        "evaluation/summary_reference.csv",
    ):
        assert (out / name).is_file(), name
    for table in ("summary.md", "summary_reference.md"):
        summary = (out / "evaluation" / table).read_text()
        assert all(
            method in summary
            for method in (
                "gen_inr",
                "single_inr",
                "linear (true input labels)",
                "cubic (true input labels)",
                "nearest (true input labels)",
            )
        )

    before = (out / "evaluation" / "summary_reference.csv").read_text()
    with pytest.raises(OutputExistsError, match="already holds evaluation results"):
        train_test_geninr.main(["--eval", str(out), "--gpu", "-1", "--quiet"])
    assert train_test_geninr.main(["--eval", str(out), "--gpu", "-1", "--quiet", "--overwrite"]) == 0
    assert (out / "evaluation_info.json").is_file()
    assert "TOTAL_EPOCHS: 2" in (out / "config.yaml").read_text()  # the run's config is left alone
    again = (out / "evaluation" / "summary_reference.csv").read_text()
    assert again.splitlines()[0] == before.splitlines()[0]
    with pytest.raises(ConfigError, match="MODEL settings are fixed"):
        train_test_geninr.main(["--eval", str(out), "--gpu", "-1", "--overwrite", "--set", "MODEL.HIDDEN_SIZE=8"])


@pytest.mark.slow
def test_singleinr_script_writes_evaluation_and_refuses_to_overwrite(phantom_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "single"
    args = _args("demo_singleinr.yaml", phantom_tree, out, "--set", "EVALUATION.SAVE_NIFTI=false")
    assert train_test_singleinr.main(args) == 0
    assert (out / "config.yaml").is_file() and (out / "evaluation" / "summary_reference.md").is_file()
    with pytest.raises(OutputExistsError):
        train_test_singleinr.main(args)
    first = (out / "evaluation" / "metrics_all_reference.csv").read_text()
    assert train_test_singleinr.main(["--eval", str(out), "--gpu", "-1", "--quiet", "--overwrite"]) == 0
    assert (out / "evaluation" / "metrics_all_reference.csv").read_text() == first  # the same fitted networks


def test_reference_command_line_flags_map_to_config_keys_and_the_run_folder(tmp_path: Path) -> None:
    parser = experiment_parser("test")
    args = parser.parse_args(
        [
            str(CONFIGS / "geninr_config.yaml"),
            "--result_dir",
            str(tmp_path),
            "--result_note",
            "wire_v2",
            "--torch_compile",
        ]
    )
    overrides = config_overrides(args)
    assert f"SETTINGS.RESULT_DIR={tmp_path}" in overrides and "SETTINGS.COMPILE=true" in overrides
    config = load_experiment_config(args.config, overrides)
    assert config.SETTINGS.COMPILE is True
    assert run_folder(config, None, args.result_note) == tmp_path / "GenFitOCT_fold1_wire_v2"
    with pytest.raises(ConfigError, match="--result_note"):
        run_folder(config, None, "../elsewhere")


def test_eval_refuses_a_config_and_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give no CONFIG"):
        train_test_geninr.main([str(CONFIGS / "geninr_config.yaml"), "--eval", str(tmp_path)])
    with pytest.raises(DataError, match=r"config.yaml: not found"):
        train_test_singleinr.main(["--eval", str(tmp_path)])
    with pytest.raises(ConfigError, match="no config given"):
        train_test_singleinr.main([])


@pytest.mark.slow
def test_predict_densifies_a_new_eye_with_a_saved_model(phantom_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert (
        train_test_geninr.main(_args("demo_geninr.yaml", phantom_tree, out, "--set", "EVALUATION.SAVE_NIFTI=false"))
        == 0
    )
    dense = tmp_path / "dense"
    assert (
        predict.main(
            [
                str(out),
                str(phantom_tree),
                "sub001_OD",
                "--subsample",
                "4",
                "--factor",
                "2",
                "--output",
                str(dense),
                "--gpu",
                "-1",
                "--quiet",
            ]
        )
        == 0
    )
    eye = read_eye(dense, "sub001", "OD")
    assert eye.shape == (32, 16, 7) and eye.labels is not None

    fast = ["--set", "TEST.TOTAL_EPOCHS=3", "--set", "TEST.LR_SCHEDULE=cosine"]
    assert (
        predict.main(
            [
                str(out),
                str(phantom_tree),
                "sub002_OS",
                "--subsample",
                "4",
                "--output",
                str(tmp_path / "fast"),
                "--gpu",
                "-1",
                "--quiet",
                *fast,
            ]
        )
        == 0
    )
    _, config, _ = load_model(out / MODEL_FILE, torch.device("cpu"), ["TEST.TOTAL_EPOCHS=3", "TEST.LR_SCHEDULE=cosine"])
    assert (config.TEST.TOTAL_EPOCHS, config.TEST.LR_SCHEDULE) == (3, "cosine")
    with pytest.raises(ConfigError, match="MODEL settings are fixed"):
        predict.main(
            [
                str(out),
                str(phantom_tree),
                "sub002_OS",
                "--output",
                str(tmp_path / "bad"),
                "--gpu",
                "-1",
                "--set",
                "MODEL.HIDDEN_SIZE=8",
            ]
        )
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_scripts_run_from_the_repository_root_and_as_modules() -> None:
    for command in (
        ["anisotropic_interpolation/train_test_geninr.py"],
        ["-m", "anisotropic_interpolation.train_test_singleinr"],
    ):
        result = subprocess.run(
            [sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0 and "--resume" in result.stdout


def test_overwrite_removes_the_outputs_of_the_old_run_and_nothing_else(phantom_tree: Path, tmp_path: Path) -> None:
    """The old run's checkpoints, model, per-eye fits and evaluation (an eye of another fold among them)
    do not survive --overwrite; a file no run writes stays."""
    from anisotropic_interpolation.pipeline import prepare_experiment

    out = tmp_path / "run"
    stale = [
        out / "checkpoints" / "last.pt",
        out / MODEL_FILE,
        out / "single_inr" / "sub009_OD" / "last.pt",
        out / "single_inr_baseline" / "sub009_OD" / "best.pt",
        out / "evaluation" / "metrics" / "sub009_OD.csv",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("old run")
    (out / "notes.txt").write_text("mine")
    args = experiment_parser("test").parse_args(_args("demo_geninr.yaml", phantom_tree, out, "--overwrite"))
    prepare_experiment(args, "train_test_geninr")
    assert not any(path.exists() for path in stale)
    assert (out / "notes.txt").read_text() == "mine" and (out / "config.yaml").is_file()
