"""The experiment flow both entry scripts share.

1. Load and validate the config, pick the device, prepare the run folder (refused if it
   holds results unless ``--overwrite``/``--resume``), save the resolved config and a run
   record.
2. Read the fold: training eyes (every k-th B-scan) and test eyes (dense ground truth and
   their every-k-th input B-scans), from reference ``.npz`` containers or a retina_data tree.
3. Gen-INR: train the population network with one code per training eye, fit a code per
   test eye, predict each test eye densely. Single INR: fit one network per test eye.
4. Add the baselines (nearest/linear/cubic, and optionally the single INR) and score every
   method on the gap and input B-scans (:func:`anisotropic_interpolation.evaluation.evaluate_run`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anisotropic_interpolation.baselines import classical_baselines
from anisotropic_interpolation.checkpoints import load_checkpoint, save_checkpoint
from anisotropic_interpolation.config import ExperimentConfig, load_experiment_config
from anisotropic_interpolation.evaluation import MethodPrediction, evaluate_run, input_mask_from_positions
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.inference import DensePrediction, predict_volume, prediction_settings
from anisotropic_interpolation.model import ImplicitNetwork, NetworkInputs, build_network
from anisotropic_interpolation.reporting import Summary, print_summary
from anisotropic_interpolation.sampling import SparseVolumes
from anisotropic_interpolation.training import NetworkTrainer, mixed_precision_dtype, precision_label
from retina_data.config import apply_overrides, from_dict, save_config, to_dict
from retina_data.containers import container_name, read_container
from retina_data.errors import ConfigError, DataError
from retina_data.eye import Eye
from retina_data.files import prepare_run_dir
from retina_data.folds import fold_split, read_folds
from retina_data.provenance import write_run_record
from retina_data.tree import DATASET_FILE, read_dataset

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
EVALUATION_DIR = "evaluation"
EXIT_INTERRUPTED = 130
GEN_INR, SINGLE_INR = "gen_inr", "single_inr"


def notice(message: str) -> None:
    """A one-line message to the user on stderr."""
    print(f"notice: {message}", file=sys.stderr)


# --- command line -------------------------------------------------------------------------

def experiment_parser(description: str) -> argparse.ArgumentParser:
    """Arguments shared by ``train_test_geninr.py`` and ``train_test_singleinr.py``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", type=Path, help="YAML config (configs/interpolation/*.yaml)")
    parser.add_argument("--gpu", type=int, default=0, help="CUDA device index; -1 (or no CUDA): CPU")
    parser.add_argument("--epochs", type=int, help="override TRAINING.TOTAL_EPOCHS")
    parser.add_argument("--fold", type=int, help="override SETTINGS.FOLD")
    parser.add_argument("--output", type=Path, help="run folder (default RESULT_DIR/<PROJECT_NAME>_fold<FOLD>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override any config key (repeatable)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    group.add_argument("--overwrite", action="store_true", help="replace results in the run folder")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def config_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides plus the ``--epochs``/``--fold`` shortcuts."""
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"TRAINING.TOTAL_EPOCHS={args.epochs}")
    if args.fold is not None:
        overrides.append(f"SETTINGS.FOLD={args.fold}")
    return overrides


def select_device(gpu: int) -> torch.device:
    """``cuda:<gpu>`` when CUDA is present and ``gpu >= 0``, else the CPU.

    The chosen GPU also becomes the current CUDA device, so code that asks for plain
    ``"cuda"`` (the LPIPS network) runs on it too.
    """
    if gpu < 0 or not torch.cuda.is_available():
        return torch.device("cpu")
    if gpu >= torch.cuda.device_count():
        raise ConfigError(f"--gpu {gpu}: only {torch.cuda.device_count()} CUDA device(s) present")
    torch.cuda.set_device(gpu)
    return torch.device(f"cuda:{gpu}")


def precision_notice(device: torch.device, config: ExperimentConfig) -> None:
    """Say so when ``TRAINING.MIXED_PRECISION`` asks for bf16 on a GPU that has none."""
    if device.type == "cuda" and config.TRAINING.MIXED_PRECISION and mixed_precision_dtype(device) is None:
        notice(f"{torch.cuda.get_device_name(device)} has no native bf16 (compute capability below 8.0): "
               "mixed precision is off, the run computes in fp32")


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy, so a run's initial weights follow ``TRAINING.SEED``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)


def make_deterministic() -> None:
    """Ask for deterministic kernels (``--deterministic``): bit-identical reruns, slower on CUDA."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def run_folder(config: ExperimentConfig, output: Path | None) -> Path:
    """``--output``, or ``RESULT_DIR/<PROJECT_NAME>_fold<FOLD>`` (``runs/`` when RESULT_DIR is empty)."""
    if output is not None:
        return output
    settings = config.SETTINGS
    return Path(settings.RESULT_DIR or "runs") / f"{settings.PROJECT_NAME}_fold{settings.FOLD}"


@dataclass
class Experiment:
    """A prepared run: config, where it came from, device and run folder."""

    config: ExperimentConfig
    config_path: Path
    device: torch.device
    run_dir: Path
    resume: bool
    overwrite: bool
    progress: bool
    data: FoldData


def prepare_experiment(args: argparse.Namespace, script: str) -> Experiment:
    """Load the config and the fold (so bad input fails before anything is written), prepare the run
    folder, save the resolved config and the run record."""
    config = load_experiment_config(args.config, config_overrides(args))
    if script == "train_test_geninr" and config.TRAINING.LATENT_CODE.SIZE == 0:
        raise ConfigError(f"{args.config}: TRAINING.LATENT_CODE.SIZE = 0: the gen-INR needs a latent code "
                          "(use train_test_singleinr.py for one network per eye)")
    device = select_device(args.gpu)
    precision_notice(device, config)
    data = load_fold(config)
    seed_everything(config.TRAINING.SEED)
    if args.deterministic:
        make_deterministic()
    run_dir = prepare_run_dir(run_folder(config, args.output), overwrite=args.overwrite, resume=args.resume)
    save_config(config, run_dir / CONFIG_FILE)
    write_run_record(run_dir, str(device), {"script": script, "config": str(args.config),
                                             "overrides": config_overrides(args),
                                             "precision": precision_label(device, config.TRAINING.MIXED_PRECISION)})
    return Experiment(config, Path(args.config), device, run_dir, args.resume, args.overwrite, not args.quiet, data)


# --- data ---------------------------------------------------------------------------------

@dataclass
class FoldData:
    """One fold: training inputs, test ground truth and test inputs (every k-th B-scan)."""

    train_inputs: list[Eye]
    test_truth: list[Eye]
    test_inputs: list[Eye]


def _is_tree(img_dir: Path, config: ExperimentConfig) -> bool:
    return (img_dir / DATASET_FILE).is_file() or (img_dir / config.SETTINGS.FOLDS_FILE).is_file()


def _read_tree_fold(img_dir: Path, config: ExperimentConfig) -> tuple[list[Eye], list[Eye]]:
    folds_path = img_dir / config.SETTINGS.FOLDS_FILE
    if not folds_path.is_file():
        raise DataError(f"{folds_path}: folds file not found (write one with `python -m retina_data folds`)")
    split = fold_split(read_folds(folds_path, img_dir), config.SETTINGS.FOLD, folds_path)
    factor = config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR
    train = [eye.subsample(factor) for eye in read_dataset(img_dir, split["TRAIN"])]
    return train, read_dataset(img_dir, split["TEST"])


_TEST_CONTAINER = re.compile(r"dataset_flat_subsmpl(\d+)_test_fold(\d+)\.npz")


def _read_container_fold(img_dir: Path, config: ExperimentConfig) -> tuple[list[Eye], list[Eye], int]:
    factor, fold = config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR, config.SETTINGS.FOLD
    train = read_container(img_dir / container_name(factor, "train", fold))
    candidates = sorted(
        int(match.group(1)) for path in img_dir.glob("dataset_flat_subsmpl*_test_fold*.npz")
        if (match := _TEST_CONTAINER.fullmatch(path.name)) and int(match.group(2)) == fold
        and factor % int(match.group(1)) == 0)
    if not candidates:
        raise DataError(f"{img_dir}: no test container dataset_flat_subsmpl<j>_test_fold{fold}.npz with j dividing "
                        f"BSCAN_SUBSAMPLE_FACTOR = {factor}")
    denser = candidates[0]
    return train, read_container(img_dir / container_name(denser, "test", fold)), factor // denser


def load_fold(config: ExperimentConfig) -> FoldData:
    """The fold named by ``SETTINGS.FOLD`` from ``SETTINGS.IMG_DIR``.

    A retina_data tree (``dataset.yaml`` or a folds file) gives dense eyes, subsampled here
    by ``BSCAN_SUBSAMPLE_FACTOR``. Reference containers give the training eyes already
    subsampled (``..._subsmpl<k>_train_fold<f>.npz``); the test truth is the densest test
    container whose factor ``j`` divides ``k``, and its input every ``k / j``-th B-scan.
    """
    img_dir = Path(config.SETTINGS.IMG_DIR)
    if not img_dir.is_dir():
        raise DataError(f"SETTINGS.IMG_DIR = {str(img_dir)!r}: data folder not found")
    if _is_tree(img_dir, config):
        train, truth = _read_tree_fold(img_dir, config)
        step = config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR
    else:
        train, truth, step = _read_container_fold(img_dir, config)
    wanted = config.TRAINING.NUM_SAMPLES
    if len(train) > wanted:
        train = train[:wanted]
    labelled = [eye for eye in train + truth if eye.has_labels]
    if config.MODEL.NUM_CLASSES > 0 and labelled:
        highest = max(int(eye.labels.max()) for eye in labelled)
        if highest >= config.MODEL.NUM_CLASSES:
            raise DataError(f"{img_dir}: labels go up to {highest} but MODEL.NUM_CLASSES = {config.MODEL.NUM_CLASSES}")
    return FoldData(train, truth, [eye.subsample(step) for eye in truth])


def network_inputs(config: ExperimentConfig, eyes: list[Eye], latent_size: int,
                   predicted: list[Eye] | None = None) -> NetworkInputs:
    """What the data supports: labels and SLO are dropped (with a notice) when some eye lacks them.

    ``eyes`` are trained on (they need labels for the segmentation head); ``predicted`` are
    only predicted (they, too, need an SLO for the en-face input).
    """
    use_slo = config.uses_slo and all(eye.has_slo for eye in eyes + (predicted or []))
    if config.uses_slo and not use_slo:
        notice("some eyes have no SLO: the en-face input is dropped (INPUT_ENFACE ignored)")
    with_labels = config.MODEL.NUM_CLASSES > 0 and all(eye.has_labels for eye in eyes)
    if config.MODEL.NUM_CLASSES > 0 and not with_labels:
        notice("some eyes have no labels: the segmentation head, loss and metrics are dropped")
    return NetworkInputs(use_slo=use_slo, latent_size=latent_size,
                         num_classes=config.MODEL.NUM_CLASSES if with_labels else 0)


def volumes(config: ExperimentConfig, eyes: list[Eye], inputs: NetworkInputs, device: torch.device) -> SparseVolumes:
    return SparseVolumes.from_eyes(eyes, use_labels=inputs.num_classes > 0, use_slo=inputs.use_slo,
                                   slice_scale=config.PREPROCESSING.SLICE_COORD_SCALE, device=device)


# --- saved models -------------------------------------------------------------------------

def save_model(path: Path, network: ImplicitNetwork, config: ExperimentConfig, codes: torch.Tensor | None,
               eye_ids: list[str]) -> Path:
    """Everything :func:`load_model` needs: config, inputs, weights, training codes."""
    return save_checkpoint(path, {
        "config": to_dict(config), "inputs": dataclasses.asdict(network.inputs),
        "network": network.state_dict(), "codes": None if codes is None else codes.detach().cpu(),
        "eye_ids": eye_ids,
    })


PREDICTION_OVERRIDE_SECTIONS = ("TEST", "SETTINGS", "EVALUATION")
"""Config sections that may change after training (the latent fit, compilation, memory budget)."""


def load_model(path: Path, device: torch.device, overrides: list[str] | None = None,
               ) -> tuple[ImplicitNetwork, ExperimentConfig, dict[str, Any]]:
    """A network saved by :func:`save_model`, its config (with ``KEY.PATH=value`` overrides of
    the sections in :data:`PREDICTION_OVERRIDE_SECTIONS`) and the raw record."""
    for text in overrides or []:
        section = text.split(".", 1)[0].strip()
        if section not in PREDICTION_OVERRIDE_SECTIONS:
            raise ConfigError(f"--set {text!r}: a saved model's {section} settings are fixed; "
                              f"only {', '.join(PREDICTION_OVERRIDE_SECTIONS)} keys can be changed")
    record = load_checkpoint(path, device)
    raw = apply_overrides(copy.deepcopy(record["config"]), overrides)
    config = from_dict(raw, ExperimentConfig, source=str(path) + (" with --set overrides" if overrides else ""))
    network = build_network(config, NetworkInputs(**record["inputs"])).to(device)
    network.load_state_dict(record["network"])
    return network, config, record


# --- methods ------------------------------------------------------------------------------

def as_method_prediction(dense: DensePrediction) -> MethodPrediction:
    return MethodPrediction(intensity=dense.intensity, labels=dense.labels)


def train_population(experiment: Experiment, data: FoldData) -> tuple[ImplicitNetwork, torch.Tensor | None, bool]:
    """Train (or resume) the gen-INR; returns the network, training codes and whether it finished."""
    config = experiment.config
    inputs = network_inputs(config, data.train_inputs, config.TRAINING.LATENT_CODE.SIZE, data.test_inputs)
    network = build_network(config, inputs).to(experiment.device)
    trainer = NetworkTrainer(network, volumes(config, data.train_inputs, inputs, experiment.device), config,
                             experiment.run_dir / "checkpoints", description="gen-INR training",
                             progress=experiment.progress)
    outcome = trainer.train(resume=experiment.resume)
    if outcome.interrupted:
        notice(f"stopped at epoch {outcome.epochs_done}; the checkpoint is in {experiment.run_dir / 'checkpoints'}; "
               "continue with --resume")
        return network, trainer.codes, False
    save_model(experiment.run_dir / MODEL_FILE, network, config, trainer.codes,
               [eye.eye_id for eye in data.train_inputs])
    return network, trainer.codes, True


def predict_gen_inr(experiment: Experiment, network: ImplicitNetwork, data: FoldData) -> dict[str, MethodPrediction]:
    """Fit a code per test eye and predict it at its ground-truth B-scan positions."""
    config = experiment.config
    codes = LatentFitter(network, config, experiment.device).fit(data.test_inputs, progress=experiment.progress)
    return {
        sparse.eye_id: as_method_prediction(predict_volume(
            network, code, sparse, truth.bscan_positions, device=experiment.device, **prediction_settings(config)))
        for sparse, truth, code in zip(data.test_inputs, data.test_truth, codes)
    }


def fit_single_inr(config: ExperimentConfig, eye: Eye, inputs: NetworkInputs, device: torch.device,
                   checkpoint_dir: Path | None, resume: bool, progress: bool = True) -> tuple[ImplicitNetwork, bool]:
    """One network fitted to one eye's input B-scans; returns it and whether training finished."""
    network = build_network(config, dataclasses.replace(inputs, latent_size=0)).to(device)
    trainer = NetworkTrainer(network, volumes(config, [eye], inputs, device), config, checkpoint_dir,
                             description=f"single INR {eye.eye_id}", progress=progress)
    return network, not trainer.train(resume=resume).interrupted


def predict_single_inr(config: ExperimentConfig, experiment: Experiment, data: FoldData,
                       folder: str) -> dict[str, MethodPrediction] | None:
    """Fit and predict a single INR per test eye (checkpoints under ``run_dir/folder/<eye_id>``)."""
    inputs = network_inputs(config, data.test_inputs, 0)
    predictions = {}
    for sparse, truth in zip(data.test_inputs, data.test_truth):
        network, finished = fit_single_inr(config, sparse, inputs, experiment.device,
                                           experiment.run_dir / folder / sparse.eye_id, experiment.resume,
                                           experiment.progress)
        if not finished:
            notice(f"stopped while fitting {sparse.eye_id}; continue with --resume")
            return None
        predictions[sparse.eye_id] = as_method_prediction(predict_volume(
            network, None, sparse, truth.bscan_positions, device=experiment.device, **prediction_settings(config)))
    return predictions


def single_inr_baseline_config(experiment: Experiment) -> ExperimentConfig:
    """The baseline's config (``EVALUATION.SINGLE_INR_CONFIG`` + its overrides), on this run's data."""
    evaluation = experiment.config.EVALUATION
    path = experiment.config_path.parent / evaluation.SINGLE_INR_CONFIG
    baseline = load_experiment_config(path, list(evaluation.SINGLE_INR_OVERRIDES))
    return dataclasses.replace(baseline, SETTINGS=experiment.config.SETTINGS,
                               PREPROCESSING=experiment.config.PREPROCESSING)


def evaluate(experiment: Experiment, data: FoldData, methods: dict[str, dict[str, MethodPrediction]]) -> Summary:
    """Add the classical baselines and score every method; prints the summary table."""
    evaluation = experiment.config.EVALUATION
    predictions: dict[str, dict[str, MethodPrediction]] = {}
    masks = {}
    for sparse, truth in zip(data.test_inputs, data.test_truth):
        per_eye = {name: by_eye[truth.eye_id] for name, by_eye in methods.items()}
        if evaluation.CLASSICAL_BASELINES:
            per_eye.update(classical_baselines(sparse, truth.bscan_positions))
        predictions[truth.eye_id] = per_eye
        masks[truth.eye_id] = input_mask_from_positions(truth.bscan_positions, sparse.bscan_positions)
    summary = evaluate_run(data.test_truth, masks, predictions, experiment.run_dir / EVALUATION_DIR,
                           save_nifti=evaluation.SAVE_NIFTI, figures=evaluation.FIGURES, lpips=evaluation.LPIPS,
                           overwrite=experiment.overwrite or experiment.resume)
    print_summary(summary)
    return summary


def run_geninr(experiment: Experiment) -> int:
    """Train the gen-INR, fit and predict the test eyes, add baselines, evaluate."""
    data = experiment.data
    network, _, finished = train_population(experiment, data)
    if not finished:
        return EXIT_INTERRUPTED
    methods = {GEN_INR: predict_gen_inr(experiment, network, data)}
    if experiment.config.EVALUATION.SINGLE_INR_BASELINE:
        single = predict_single_inr(single_inr_baseline_config(experiment), experiment, data, "single_inr_baseline")
        if single is None:
            return EXIT_INTERRUPTED
        methods[SINGLE_INR] = single
    evaluate(experiment, data, methods)
    return 0


def run_singleinr(experiment: Experiment) -> int:
    """Fit one network per test eye, predict it, add baselines, evaluate."""
    config = experiment.config
    if config.TRAINING.LATENT_CODE.SIZE != 0:
        notice(f"the single INR has no latent code; TRAINING.LATENT_CODE.SIZE = {config.TRAINING.LATENT_CODE.SIZE} "
               "is ignored")
    data = experiment.data
    single = predict_single_inr(config, experiment, data, "single_inr")
    if single is None:
        return EXIT_INTERRUPTED
    evaluate(experiment, data, {SINGLE_INR: single})
    return 0
