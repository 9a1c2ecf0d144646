"""The experiment flow both entry scripts share.

1. Load and validate the config, pick the device, read and check the fold: training eyes
   (every k-th B-scan) and test eyes (dense ground truth and their every-k-th input B-scans),
   from reference ``.npz`` containers or a retina_data tree, with the checks of ``validate``
   (dtypes, finite values, flattened OCT in [0, 1] unless each eye is min-max normalised on
   load, labels, positions), non-empty TRAIN/TEST, one training shape and no subject in both.
2. Prepare the run folder (refused if it holds results unless ``--overwrite``/``--resume``),
   save the resolved config, the run identity (:mod:`retina_data.run_identity`) and a run
   record. ``--resume`` instead compares the run with the recorded identity and refuses any
   difference, checks the checkpoints it will restore, and rewrites nothing.
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
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from tqdm import tqdm

from anisotropic_interpolation.baselines import METHODS as CLASSICAL_METHODS
from anisotropic_interpolation.baselines import classical_baselines
from anisotropic_interpolation.checkpoints import resume_checkpoint
from anisotropic_interpolation.config import RESUME_FREE_KEYS, ExperimentConfig, load_experiment_config
from anisotropic_interpolation.distributed import EyeShard, add_launch_arguments, gpu_indices, launch, leave
from anisotropic_interpolation.evaluation import MethodPrediction, evaluate_run, input_mask_from_positions
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.inference import DensePrediction, predict_volume, prediction_settings
from anisotropic_interpolation.model import ImplicitNetwork, NetworkInputs, build_network
from anisotropic_interpolation.reporting import existing_outputs, print_summary
from anisotropic_interpolation.sampling import SparseVolumes, TrainingVolumes
from anisotropic_interpolation.streaming import StreamedEye, StreamedVolumes, TrainingEye
from anisotropic_interpolation.training import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    NetworkTrainer,
    mixed_precision_dtype,
    precision_label,
)
from retina_data.checkpoints import check_state_matches, load_checkpoint, require_keys, save_checkpoint
from retina_data.commandline import interrupt_on_sigterm, is_stop, notice
from retina_data.config import apply_overrides, from_dict, read_yaml, save_config, to_dict
from retina_data.containers import container_name, read_container, refuse_shared_subjects
from retina_data.errors import ConfigError, DataError, OutputExistsError
from retina_data.eye import LATERALITIES, Eye
from retina_data.eye_store import EyeStore, is_store, local_path
from retina_data.files import check_run_dir, previous_path
from retina_data.folds import fold_split, read_folds
from retina_data.memory import check_fits_for_training
from retina_data.preprocessing import minmax_normalise_eye
from retina_data.provenance import write_run_record
from retina_data.result_tables import Summary
from retina_data.run_identity import (
    RUN_CONFIG_FILE,
    RunIdentity,
    check_resume,
    check_unseen_test_eyes,
    resume_identities,
    write_run_identity,
)
from retina_data.tree import DATASET_FILE, eye_files, read_dataset
from retina_data.validation import Problem, eye_problems, label_count, require_valid_eyes

MODEL_FILE = "model.pt"
CONFIG_FILE = RUN_CONFIG_FILE
EVALUATION_DIR = "evaluation"
EVALUATION_RECORD = "evaluation_info.json"
SINGLE_INR_BASELINE_DIR = "single_inr_baseline"
SINGLE_INR_DIR = "single_inr"
EXIT_INTERRUPTED = 130
GEN_INR, SINGLE_INR = "gen_inr", "single_inr"


# --- command line -------------------------------------------------------------------------


def experiment_parser(description: str) -> argparse.ArgumentParser:
    """Arguments shared by ``train_test_geninr.py`` and ``train_test_singleinr.py``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "config", type=Path, nargs="?", help="YAML config (configs/interpolation/*.yaml); not with --eval"
    )
    parser.add_argument(
        "--gpu",
        type=int,
        default=None,
        help="CUDA device index (refused without CUDA); -1: the CPU; default: GPU 0 if there is one",
    )
    add_launch_arguments(parser)
    parser.add_argument("--epochs", type=int, help="override TRAINING.TOTAL_EPOCHS")
    parser.add_argument("--fold", type=int, help="override SETTINGS.FOLD")
    parser.add_argument(
        "--output", type=Path, help="run folder (default RESULT_DIR/<PROJECT_NAME>_fold<FOLD>[_<result_note>])"
    )
    parser.add_argument(
        "--eval",
        type=Path,
        metavar="RUN",
        help="evaluate the trained run folder RUN without training: its best model (gen-INR: "
        "model.pt; single INR: each eye's best.pt), a new latent fit of the test eyes, "
        "scores in RUN/evaluation; its own config.yaml, TEST/SETTINGS/EVALUATION keys "
        "changeable with --set",
    )
    parser.add_argument("--result_dir", type=str, help="override SETTINGS.RESULT_DIR (the reference's flag)")
    parser.add_argument(
        "--result_note",
        type=str,
        default="",
        help="a note appended to the default run folder name (<PROJECT_NAME>_fold<FOLD>_<note>) "
        "and recorded in run_info.json",
    )
    parser.add_argument("--torch_compile", action="store_true", help="set SETTINGS.COMPILE = true (torch.compile)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override any config key (repeatable)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    group.add_argument("--overwrite", action="store_true", help="replace results in the run folder")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def config_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides plus the ``--epochs``/``--fold``/``--result_dir``/``--torch_compile`` shortcuts."""
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"TRAINING.TOTAL_EPOCHS={args.epochs}")
    if args.fold is not None:
        overrides.append(f"SETTINGS.FOLD={args.fold}")
    if args.result_dir is not None:
        overrides.append(f"SETTINGS.RESULT_DIR={args.result_dir}")
    if args.torch_compile:
        overrides.append("SETTINGS.COMPILE=true")
    return overrides


def select_device(gpu: int | None) -> torch.device:
    """``cuda:<gpu>`` for ``gpu >= 0`` (refused without CUDA: a run never silently falls back
    to the CPU), the CPU for ``gpu < 0``; ``None`` (no ``--gpu``): GPU 0 if there is one, else the CPU.

    The chosen GPU also becomes the current CUDA device, so code that asks for plain
    ``"cuda"`` (the LPIPS network) runs on it too.
    """
    gpus = gpu_indices(gpu)
    if not gpus:
        return torch.device("cpu")
    torch.cuda.set_device(gpus[0])
    return torch.device(f"cuda:{gpus[0]}")


def precision_notice(device: torch.device, config: ExperimentConfig) -> None:
    """Say so when ``TRAINING.MIXED_PRECISION`` asks for bf16 on a GPU that has none."""
    if device.type == "cuda" and config.TRAINING.MIXED_PRECISION and mixed_precision_dtype(device) is None:
        notice(
            f"{torch.cuda.get_device_name(device)} has no native bf16 (compute capability below 8.0): "
            "mixed precision is off, the run computes in fp32"
        )


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy, so a run's initial weights follow ``TRAINING.SEED``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def make_deterministic() -> None:
    """Ask for deterministic kernels (``--deterministic``): bit-identical reruns, slower on CUDA."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


_NOTE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def run_folder(config: ExperimentConfig, output: Path | None, note: str = "") -> Path:
    """``--output``, or ``RESULT_DIR/<PROJECT_NAME>_fold<FOLD>[_<note>]`` (``runs/`` when RESULT_DIR is empty)."""
    if note and not _NOTE.fullmatch(note):
        raise ConfigError(f"--result_note {note!r}: expected letters, digits, '_', '.', '+' or '-' (it names a folder)")
    if output is not None:
        return output
    settings = config.SETTINGS
    name = f"{settings.PROJECT_NAME}_fold{settings.FOLD}" + (f"_{note}" if note else "")
    return Path(settings.RESULT_DIR or "runs") / name


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
    evaluate_only: bool = False
    """``--eval``: load the run's trained networks instead of training them."""
    fabric: Fabric | None = None
    """The processes of a run on several (``--devices``, ``--num-nodes``); ``None``: this one only."""

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run folder and reports (rank 0, or the only one)."""
        return self.fabric is None or self.fabric.global_rank == 0

    def wait_for_all(self) -> None:
        """Wait until every process of the run gets here."""
        if self.fabric is not None:
            self.fabric.barrier()


def prepare_experiment(args: argparse.Namespace, script: str) -> Experiment:
    """Load the config and the fold (so bad input fails before anything is written), prepare the run
    folder, save the resolved config and the run record (``--eval``: see :func:`prepare_evaluation`)."""
    if args.eval is not None:
        return prepare_evaluation(args, script)
    if args.config is None:
        raise ConfigError("no config given: expected CONFIG (a YAML file) or --eval RUN")
    config = load_experiment_config(args.config, config_overrides(args))
    if script == "train_test_geninr" and config.TRAINING.LATENT_CODE.SIZE == 0:
        raise ConfigError(
            f"{args.config}: TRAINING.LATENT_CODE.SIZE = 0: the gen-INR needs a latent code "
            "(use train_test_singleinr.py for one network per eye)"
        )
    fabric = start_processes(args, script)
    device = select_device(args.gpu) if fabric is None else fabric.device
    precision_notice(device, config)
    data = load_fold(
        config,
        minmax_normalise_for(config, script),
        training=script == "train_test_geninr",
        fabric=fabric,
        progress=not args.quiet and (fabric is None or fabric.global_rank == 0),
    )
    check_network_fits(config, device, args.config)
    if fabric is not None and len(data.train_inputs) < fabric.world_size:
        raise ConfigError(
            f"--devices {args.devices} --num-nodes {args.num_nodes}: {fabric.world_size} processes for "
            f"{len(data.train_inputs)} training eyes; expected at most one process per eye"
        )
    run_dir = check_run_dir(
        run_folder(config, args.output, args.result_note), overwrite=args.overwrite, resume=args.resume
    )
    identity = run_identity(config, script, data)
    resuming = args.resume and check_resumable_run(run_dir, identity)
    seed_everything(config.TRAINING.SEED)
    if args.deterministic:
        make_deterministic()
    experiment = Experiment(
        config, Path(args.config), device, run_dir, resuming, args.overwrite, not args.quiet, data, fabric=fabric
    )
    experiment.wait_for_all()  # every process has checked the folder before rank 0 writes into it
    if experiment.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            remove_run_outputs(run_dir)
        if not resuming:
            save_config(config, run_dir / CONFIG_FILE)
            write_run_identity(run_dir, identity)
            write_run_record(
                run_dir,
                str(device),
                {
                    "script": script,
                    "config": str(args.config),
                    "overrides": config_overrides(args),
                    "result_note": args.result_note,
                    "devices": args.devices,
                    "num_nodes": args.num_nodes,
                    "precision": precision_label(device, config.TRAINING.MIXED_PRECISION),
                },
            )
    experiment.wait_for_all()
    return experiment


RUN_OUTPUTS = ("checkpoints", SINGLE_INR_DIR, EVALUATION_DIR, SINGLE_INR_BASELINE_DIR, MODEL_FILE)
"""What a run writes besides its records: removed by ``--overwrite`` so that nothing of the old run
(another fold's eyes, its checkpoints and logs) survives beside the new one."""


def remove_run_outputs(run_dir: Path) -> None:
    """Remove the :data:`RUN_OUTPUTS` of an earlier run in ``run_dir``; other files stay."""
    for name in RUN_OUTPUTS:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def start_processes(args: argparse.Namespace, script: str) -> Fabric | None:
    """The processes of ``--devices N --num-nodes M`` (:func:`~anisotropic_interpolation.distributed.launch`;
    this process is one of them), or ``None`` for one process. Only the gen-INR population
    training runs on several; the single INR and ``--eval`` are refused there."""
    if args.devices * args.num_nodes == 1:
        return None
    if script != "train_test_geninr" or args.eval is not None:
        what = "--eval" if args.eval is not None else f"{script}.py"
        raise ConfigError(
            f"--devices {args.devices} --num-nodes {args.num_nodes}: {what} runs in one process; "
            "several processes train the gen-INR population (train_test_geninr.py CONFIG)"
        )
    return launch(args.gpu, args.devices, args.num_nodes)


POINT_BATCH_BYTES = 36
"""What a sampled training point holds at least: 3 float32 coordinates, its SLO value and intensity
(float32) and an int64 eye index and label; the network's activations come on top."""


def check_network_fits(config: ExperimentConfig, device: torch.device, source: Path) -> None:
    """Refuse, before anything is written, a network whose weights and optimiser state alone, with
    the point batch of a ``patches`` step, exceed the device's memory
    (:func:`retina_data.memory.check_fits_for_training`)."""
    inputs = NetworkInputs(
        use_slo=config.uses_slo, latent_size=config.TRAINING.LATENT_CODE.SIZE, num_classes=config.MODEL.NUM_CLASSES
    )
    model, points = config.MODEL, config.TRAINING.BATCH_POINTS
    patches = config.TRAINING.SAMPLING == "patches"
    check_fits_for_training(
        lambda: build_network(config, inputs),
        device,
        f"{source}: MODEL.HIDDEN_SIZE = {model.HIDDEN_SIZE}, NUM_LAYERS = {model.NUM_LAYERS} "
        "(and POS_ENCODING)" + (f", TRAINING.BATCH_POINTS = {points}" if patches else ""),
        points * POINT_BATCH_BYTES if patches else 0,
        f" and steps of {points:,} points" if patches else "",
    )


def run_identity(config: ExperimentConfig, script: str, data: FoldData) -> RunIdentity:
    """What determines this run's result (:mod:`retina_data.run_identity`): the resolved config
    without :data:`~anisotropic_interpolation.config.RESUME_FREE_KEYS` (IMG_DIR as an absolute
    path, or the URL of an eye store on another file system, whose files are then known by the
    eyes' ids only), the script, the fold's eyes and the size and time of every data file it read."""
    resolved = to_dict(config)
    local = local_path(config.SETTINGS.IMG_DIR)
    img_dir = (Path() if local is None else local).resolve()
    resolved["SETTINGS"]["IMG_DIR"] = str(config.SETTINGS.IMG_DIR) if local is None else str(img_dir)
    eyes = {"train": [eye.eye_id for eye in data.train_inputs], "test": [eye.eye_id for eye in data.test_truth]}
    return RunIdentity.of(script, resolved, RESUME_FREE_KEYS, eyes, data.sources, img_dir)


def check_resumable_run(run_dir: Path, identity: RunIdentity) -> bool:
    """``--resume``: whether ``run_dir`` holds a run to continue (``False``: it is empty or new, the
    run starts). Refuses, before anything is written, a run that differs from the recorded one
    (its ``run_identity.json``; a folder of an older version without one: its ``config.yaml``)
    and checkpoints that cannot be continued (:func:`check_resume_checkpoints`)."""
    compared = resume_identities(run_dir, identity, _identity_from_saved_config)
    if compared is None:
        return False
    check_resume(run_dir, *compared)
    check_resume_checkpoints(run_dir)
    return True


def _identity_from_saved_config(saved: Path, identity: RunIdentity) -> tuple[RunIdentity, RunIdentity]:
    """A run folder of an older version: its ``config.yaml`` as written (``to_dict`` of its config)
    against the keys of ``identity`` that it holds (keys added since cannot be compared); the
    eyes and files are unknown."""
    try:
        old = read_yaml(saved)
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    if not isinstance(old, dict) or not isinstance(old.get("SETTINGS"), dict):
        raise DataError(f"{saved}: expected the resolved config this script saved there")
    old["SETTINGS"]["IMG_DIR"] = str(Path(str(old["SETTINGS"].get("IMG_DIR", ""))).resolve())
    recorded = RunIdentity.of(identity.script or "", old, RESUME_FREE_KEYS, {}, [], saved.parent)
    recorded_keys = recorded.config or {}  # None: unknown, so nothing to compare
    known = {key: value for key, value in (identity.config or {}).items() if key in recorded_keys}
    return (
        dataclasses.replace(recorded, script=None, eyes=None, files=None),
        dataclasses.replace(identity, config=known),
    )


def check_resume_checkpoints(run_dir: Path) -> None:
    """Every checkpoint folder of the run (one holding ``best.pt`` or ``last.prev.pt``) must still
    hold its ``last.pt``: refused otherwise, naming what is there (:func:`resume_checkpoint`)."""
    markers = [*run_dir.rglob(BEST_CHECKPOINT), *run_dir.rglob(previous_path(LAST_CHECKPOINT).name)]
    for folder in sorted({marker.parent for marker in markers}):
        resume_checkpoint(folder, LAST_CHECKPOINT, BEST_CHECKPOINT)


def check_restorable(network: ImplicitNetwork, checkpoint_dir: Path, device: torch.device) -> None:
    """Before a resume restores ``checkpoint_dir/last.pt``: it must be readable, of this trainer and
    hold weights of ``network``'s architecture, else one line instead of a traceback mid-way."""
    path = resume_checkpoint(checkpoint_dir, LAST_CHECKPOINT, BEST_CHECKPOINT)
    if path is None:
        return
    state = load_checkpoint(path, device)
    require_keys(state, ("epoch", "network", "optimizer"), path, "a training checkpoint of this script")
    check_state_matches(network, state["network"], path)


def prepare_evaluation(args: argparse.Namespace, script: str) -> Experiment:
    """``--eval RUN``: the run's own config (``RUN/config.yaml`` with ``--set`` overrides of the
    sections in :data:`PREDICTION_OVERRIDE_SECTIONS`) and fold; results go to ``RUN/evaluation``,
    refused before anything is computed if it holds results, unless ``--overwrite``."""
    run_dir = args.eval
    if args.config is not None:
        raise ConfigError(
            f"--eval {run_dir}: evaluates with the run's own {CONFIG_FILE}; give no CONFIG "
            "(change TEST, SETTINGS or EVALUATION keys with --set)"
        )
    if args.resume:
        raise ConfigError(f"--eval {run_dir}: trains nothing, so there is nothing to --resume")
    start_processes(args, script)
    if not (run_dir / CONFIG_FILE).is_file():
        raise DataError(f"{run_dir / CONFIG_FILE}: not found; --eval expects a run folder of this script")
    overrides = config_overrides(args)
    check_prediction_overrides(overrides)
    config = load_experiment_config(run_dir / CONFIG_FILE, overrides)
    existing = existing_outputs(run_dir / EVALUATION_DIR)
    if existing and not args.overwrite:
        raise OutputExistsError(
            f"{run_dir / EVALUATION_DIR}: already holds evaluation results ({existing[0]}, ...); "
            "pass --overwrite to replace them"
        )
    device = select_device(args.gpu)
    precision_notice(device, config)
    data = load_fold(config, minmax_normalise_for(config, script), training=False)
    check_unseen_test_eyes(
        run_dir,
        [eye.eye_id for eye in data.test_truth],
        "SETTINGS.IMG_DIR",
        config.SETTINGS.IMG_DIR,
        f"--eval {run_dir}",
    )
    seed_everything(config.TRAINING.SEED)
    if args.deterministic:
        make_deterministic()
    write_run_record(
        run_dir,
        str(device),
        {
            "script": script,
            "evaluated": str(run_dir),
            "overrides": overrides,
            "result_note": args.result_note,
            "precision": precision_label(device, config.TRAINING.MIXED_PRECISION),
        },
        name=EVALUATION_RECORD,
    )
    return Experiment(
        config, run_dir / CONFIG_FILE, device, run_dir, False, args.overwrite, not args.quiet, data, evaluate_only=True
    )


# --- data ---------------------------------------------------------------------------------


@dataclass
class FoldData:
    """One fold: training inputs, test ground truth and test inputs (every k-th B-scan).

    The training inputs are :class:`~retina_data.eye.Eye` records in memory, or, streamed from
    an eye store (``TRAINING.DATA_ON_DEVICE: false``), :class:`~anisotropic_interpolation.streaming.StreamedEye`
    metadata only: no voxel of a training eye stays in the process.
    """

    train_inputs: list[TrainingEye]
    test_truth: list[Eye]
    test_inputs: list[Eye]
    sources: list[Path] = dataclasses.field(default_factory=list)
    """The data files the fold was read from (for the run identity)."""
    store: EyeStore | None = None
    """The eye store the fold was read from (its eyes' metadata kept), ``None`` for a tree or containers."""


def _is_tree(img_dir: Path, config: ExperimentConfig) -> bool:
    return (img_dir / DATASET_FILE).is_file() or (img_dir / config.SETTINGS.FOLDS_FILE).is_file()


def _fold_subjects(folds_path: Path, config: ExperimentConfig, data_dir: Path | None) -> dict[str, list[str]]:
    """The TRAIN and TEST subjects of ``SETTINGS.FOLD`` (with ``data_dir``: each on disk there), neither empty."""
    if not folds_path.is_file():
        raise DataError(f"{folds_path}: folds file not found (write one with `python -m retina_data folds`)")
    split = fold_split(read_folds(folds_path, data_dir), config.SETTINGS.FOLD, folds_path)
    for role in ("TRAIN", "TEST"):
        if not split[role]:
            raise DataError(f"{folds_path}: FOLD.{config.SETTINGS.FOLD}.{role} is empty; expected at least one subject")
    return split


def _read_tree_fold(img_dir: Path, config: ExperimentConfig) -> tuple[list[Eye], list[Eye]]:
    split = _fold_subjects(img_dir / config.SETTINGS.FOLDS_FILE, config, img_dir)
    factor = config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR
    layout = config.SETTINGS.TREE_LAYOUT
    train = [eye.subsample(factor) for eye in read_dataset(img_dir, split["TRAIN"], layout=layout)]
    return train, read_dataset(img_dir, split["TEST"], layout=layout)


def store_folds_path(store: EyeStore, config: ExperimentConfig) -> Path:
    """``SETTINGS.FOLDS_FILE`` of an eye store: in the store's folder (``python -m retina_data store``
    copies a tree's folds file there); for a store at a URL, relative to the working folder."""
    local = local_path(store.location)
    return (Path() if local is None else local) / config.SETTINGS.FOLDS_FILE


def _read_store_fold(store: EyeStore, config: ExperimentConfig) -> tuple[list[str], list[Eye]]:
    """A store's fold, as a tree's: the ids of the training eyes (of the fold's TRAIN subjects,
    :func:`store_folds_path`; not read) and the test eyes, read dense."""
    folds_path = store_folds_path(store, config)
    split = _fold_subjects(folds_path, config, None)
    stored = set(store.eye_ids)
    ids: dict[str, list[str]] = {}
    for role, subjects in split.items():
        missing = [subject for subject in subjects if not any(f"{subject}_{lat}" in stored for lat in LATERALITIES)]
        if missing:
            raise DataError(
                f"{folds_path}: FOLD.{config.SETTINGS.FOLD}.{role} names subject(s) not found in "
                f"{store.location}: {', '.join(missing)}"
            )
        ids[role] = [f"{subject}_{lat}" for subject in subjects for lat in LATERALITIES if f"{subject}_{lat}" in stored]
    return ids["TRAIN"], [store.read_eye(eye_id) for eye_id in ids["TEST"]]


def _tree_sources(img_dir: Path, config: ExperimentConfig, eyes: list[Eye]) -> list[Path]:
    """The files a tree fold is read from: the folds file, ``dataset.yaml`` and each eye's volumes."""
    files = [img_dir / config.SETTINGS.FOLDS_FILE, img_dir / DATASET_FILE]
    for eye in eyes:
        paths = eye_files(img_dir, eye.subject, eye.laterality)
        files += [paths.oct, paths.labels, paths.slo]
    return files


def check_fold(
    config: ExperimentConfig,
    data: FoldData,
    img_dir: Path,
    source: str,
    normalise: bool,
    training: bool,
    num_labels: int,
) -> None:
    """The checks of ``validate`` on the loaded eyes (:func:`fold_eye_problems`), eyes in the TEST
    (and, when ``training``, TRAIN) part, one shape for the training eyes (they are trained
    together) and, for containers, no subject in both parts. ``source``: ``"tree"``,
    ``"container"`` or ``"store"``; ``num_labels``: label classes of the data set. Training eyes
    left in a store (:class:`StreamedEye`) are checked by their metadata here and by their
    values as they are read (:func:`check_streamed_eyes`)."""
    roles = {"test": data.test_truth, **({"training": data.train_inputs} if training else {})}
    for role, eyes in roles.items():
        if not eyes:
            raise DataError(f"{img_dir}: fold {config.SETTINGS.FOLD} has no {role} eyes; expected at least one")
    shapes = sorted({eye.shape for eye in data.train_inputs}) if training else []
    if len(shapes) > 1:
        odd = [eye.eye_id for eye in data.train_inputs if eye.shape != data.train_inputs[0].shape]
        raise DataError(
            f"{img_dir}: the training eyes of fold {config.SETTINGS.FOLD} differ in shape "
            f"[H, W, input B-scans] ({', '.join(str(shape) for shape in shapes)}: e.g. {odd[0]}); "
            "expected one shape, as they are trained together"
        )
    kept = [eye for eye in data.train_inputs if isinstance(eye, Eye)]
    if source == "container" and kept:
        refuse_shared_subjects(kept, kept[0].meta["container"], data.test_truth, data.test_truth[0].meta["container"])
    problems = []
    for eye in kept + data.test_truth + data.test_inputs:
        problems += fold_eye_problems(config, eye, source, img_dir, normalise, num_labels)
    require_valid_eyes(problems, img_dir)


def fold_eye_problems(
    config: ExperimentConfig, eye: Eye, source: str, img_dir: Path, normalise: bool, num_labels: int
) -> list[Problem]:
    """The checks of ``validate`` on one loaded eye (:func:`retina_data.validation.eye_problems`:
    labels in ``0 .. max(num_labels, MODEL.NUM_CLASSES) - 1``; the [0, 1] range of the OCT only
    when the eyes are not min-max normalised on load)."""
    where = Path(eye.meta["container"]) if source == "container" else img_dir
    return eye_problems(
        eye, source, where, num_labels=max(num_labels, config.MODEL.NUM_CLASSES), intensity_range=not normalise
    )


def labels_problem(config: ExperimentConfig, eyes: Sequence[Eye], img_dir: Path) -> Problem | None:
    """Labels of ``eyes`` at or above ``MODEL.NUM_CLASSES`` (when the network segments), or ``None``."""
    labelled = [eye.labels for eye in eyes if eye.labels is not None and eye.labels.size]
    if config.MODEL.NUM_CLASSES > 0 and labelled:
        highest = max(int(labels.max()) for labels in labelled)
        if highest >= config.MODEL.NUM_CLASSES:
            return Problem(img_dir, f"labels go up to {highest} but MODEL.NUM_CLASSES = {config.MODEL.NUM_CLASSES}")
    return None


def check_streamed_eyes(
    config: ExperimentConfig,
    store: EyeStore,
    eyes: list[StreamedEye],
    img_dir: Path,
    normalise: bool,
    shard: EyeShard,
    progress: bool = False,
) -> list[StreamedEye]:
    """The checks :func:`load_fold` makes on training eyes in memory, made on training eyes left in
    the store: each eye of this process's ``shard`` is read (its input B-scans and SLO), checked
    (:func:`fold_eye_problems`, :func:`labels_problem`) and let go, one at a time, keeping only
    its OCT range (:meth:`StreamedEye.checked`); the other processes' eyes are left unread.
    Every process of the run refuses the fold when one of them found a problem.

    Returns:
        ``eyes``, those of the shard with their OCT range.

    Raises:
        DataError: the first problem (and how many more), or, in a process whose own eyes are
            fine, that another process's eye was refused.
    """
    problems: list[Problem] = []
    checked = list(eyes)
    for index in tqdm(shard.indices, desc="checking training eyes", unit="eye", disable=not progress):
        eye = eyes[index]
        try:
            read = eye.read(store)
        except DataError as exc:
            problems.append(Problem(store.location, str(exc).removeprefix(f"{store.location}: ")))
            continue
        problems += fold_eye_problems(config, read, "store", img_dir, normalise, store.num_labels)
        labels = labels_problem(config, [read], img_dir)
        if labels is not None:
            problems.append(Problem(img_dir, f"eye {eye.eye_id}: {labels.message}"))
        checked[index] = eye.checked(read)
    if shard.any(bool(problems)) and not problems:
        raise DataError(
            f"{img_dir}: a training eye read by another process of this run was refused (that process "
            f"names it); `python -m retina_data validate {img_dir}` lists every problem"
        )
    require_valid_eyes(problems, img_dir)
    return checked


_TEST_CONTAINER = re.compile(r"dataset_flat_subsmpl(\d+)_test_fold(\d+)\.npz")


def _truth_factor(img_dir: Path, config: ExperimentConfig) -> int:
    """The factor of the test container scored against (``EVALUATION.TRUTH_CONTAINER``)."""
    factor, fold = config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR, config.SETTINGS.FOLD
    if config.EVALUATION.TRUTH_CONTAINER == "half":
        path = img_dir / container_name(factor // 2, "test", fold)
        if factor % 2 or not path.is_file():
            raise DataError(
                f"{path if factor % 2 == 0 else img_dir}: EVALUATION.TRUTH_CONTAINER = 'half' scores "
                f"against the test container at half BSCAN_SUBSAMPLE_FACTOR = {factor} (the paper: "
                "subsmpl16 for subsmpl32); it is missing, or set TRUTH_CONTAINER to 'densest'"
            )
        return factor // 2
    candidates = sorted(
        int(match.group(1))
        for path in img_dir.glob("dataset_flat_subsmpl*_test_fold*.npz")
        if (match := _TEST_CONTAINER.fullmatch(path.name))
        and int(match.group(2)) == fold
        and factor % int(match.group(1)) == 0
    )
    if not candidates:
        raise DataError(
            f"{img_dir}: no test container dataset_flat_subsmpl<j>_test_fold{fold}.npz with j "
            f"dividing BSCAN_SUBSAMPLE_FACTOR = {factor}"
        )
    return candidates[0]


def _as_inputs_of(fitting: list[Eye], truth: list[Eye], step: int, path: Path) -> list[Eye]:
    """The test container's eyes at the input factor, placed at their truth's input B-scan positions."""
    if [eye.eye_id for eye in fitting] != [eye.eye_id for eye in truth]:
        raise DataError(
            f"{path}: holds eyes {[eye.eye_id for eye in fitting]}, the evaluation container "
            f"{[eye.eye_id for eye in truth]}; expected the same eyes in the same order"
        )
    placed = []
    for eye, dense in zip(fitting, truth):
        positions = dense.bscan_positions[::step]
        if eye.shape[2] != positions.size or eye.shape[:2] != dense.shape[:2]:
            raise DataError(
                f"{path}: eye {eye.eye_id} has shape {eye.shape}; every {step}-th B-scan of its "
                f"evaluation volume {dense.shape} gives {(*dense.shape[:2], positions.size)}"
            )
        slo_positions = positions if eye.slo is not None and eye.slo.shape[1] == positions.size else None
        placed.append(
            dataclasses.replace(
                eye,
                bscan_positions=positions,
                slo_positions=slo_positions,
                spacing=(eye.spacing[0], eye.spacing[1], dense.spacing[2] * step),
                meta=dict(eye.meta),
            )
        )
    return placed


def _read_container_fold(
    img_dir: Path, config: ExperimentConfig, normalise: bool
) -> tuple[list[Eye], list[Eye], list[Eye] | None, int]:
    """Training eyes, test truth, the test eyes' own fitting volumes (``None``: derive them from the
    truth) and the input step within the truth."""
    factor, fold, layout = (
        config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR,
        config.SETTINGS.FOLD,
        config.SETTINGS.ENFACE_LAYOUT,
    )
    train = read_container(img_dir / container_name(factor, "train", fold), layout)
    denser = _truth_factor(img_dir, config)
    truth = read_container(img_dir / container_name(denser, "test", fold), layout)
    step = factor // denser
    fitting_path = img_dir / container_name(factor, "test", fold)
    fitting = None
    if normalise and fitting_path.is_file():
        fitting = _as_inputs_of(read_container(fitting_path, layout), truth, step, fitting_path)
    return train, truth, fitting, step


def minmax_normalise_for(config: ExperimentConfig, script: str) -> bool:
    """``PREPROCESSING.MINMAX_NORMALISE``; null: as the reference script (gen-INR yes, single INR no)."""
    chosen = config.PREPROCESSING.MINMAX_NORMALISE
    return script == "train_test_geninr" if chosen is None else chosen


def load_fold(
    config: ExperimentConfig,
    normalise: bool = False,
    *,
    training: bool = True,
    fabric: Fabric | None = None,
    progress: bool = False,
) -> FoldData:
    """The fold named by ``SETTINGS.FOLD`` from ``SETTINGS.IMG_DIR``.

    A retina_data tree (``dataset.yaml`` or a folds file; ``SETTINGS.TREE_LAYOUT``) or an eye
    store (:mod:`retina_data.eye_store`, folds file: :func:`store_folds_path`) gives dense eyes,
    subsampled here by ``BSCAN_SUBSAMPLE_FACTOR`` = k: the truth is the dense eye, its inputs
    every k-th B-scan. Reference containers give the training eyes already
    subsampled (``..._subsmpl<k>_train_fold<f>.npz``); the truth is the test container chosen
    by ``EVALUATION.TRUTH_CONTAINER`` (factor ``j``), the inputs its every ``k / j``-th B-scan.

    With ``normalise`` (the reference gen-INR) each eye's OCT and SLO are min-max normalised
    on their own, separately in the training volume, the fitting volume and the truth; a
    container fold's fitting volumes are then read from ``..._subsmpl<k>_test_fold<f>.npz``
    where it exists, as the reference reads them.

    The eyes are checked as ``validate`` checks them, before anything is written
    (:func:`check_fold`; ``training``: the training eyes are used, so they must be there).

    With ``TRAINING.DATA_ON_DEVICE: false`` (an eye store) the training eyes are not kept: the
    fold holds their metadata (:class:`StreamedEye`), and, when ``training``, each is read once
    to check it (:func:`check_streamed_eyes`; in a run of several processes, ``fabric``, each
    process its own eyes, with a progress bar where ``progress``) and let go.
    """
    if not config.SETTINGS.IMG_DIR:
        raise ConfigError(
            "SETTINGS.IMG_DIR is empty: set it to a folder of fold containers or a retina_data tree, "
            "or pass --set SETTINGS.IMG_DIR=PATH"
        )
    store = EyeStore.open(config.SETTINGS.IMG_DIR) if is_store(config.SETTINGS.IMG_DIR) else None
    if training and store is None and not config.TRAINING.DATA_ON_DEVICE:
        raise ConfigError(
            f"TRAINING.DATA_ON_DEVICE = false streams the training eyes from an eye store: expected "
            f"SETTINGS.IMG_DIR to be one (`python -m retina_data store`), got {config.SETTINGS.IMG_DIR!r}"
        )
    img_dir = Path(config.SETTINGS.IMG_DIR)
    if store is None and not img_dir.is_dir():
        raise DataError(f"SETTINGS.IMG_DIR = {str(img_dir)!r}: data folder not found")
    fitting = None
    source = "store" if store is not None else "tree" if _is_tree(img_dir, config) else "container"
    factor, wanted = config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR, config.TRAINING.NUM_SAMPLES
    streamed: list[StreamedEye] = []
    if source == "container":
        train, truth, fitting, step = _read_container_fold(img_dir, config, normalise)
    elif store is not None:
        train_ids, truth = _read_store_fold(store, config)
        if config.TRAINING.DATA_ON_DEVICE:
            train = [store.read_eye(eye_id).subsample(factor) for eye_id in train_ids[:wanted]]
        else:
            train, streamed = [], [StreamedEye(store.info(eye_id), factor) for eye_id in train_ids[:wanted]]
        step = factor
    else:
        train, truth = _read_tree_fold(img_dir, config)
        step = factor
    if len(train) > wanted:
        train = train[:wanted]
    labels = labels_problem(config, train + truth, img_dir)
    if labels is not None:
        raise DataError(str(labels))
    inputs = fitting if fitting is not None else [eye.subsample(step) for eye in truth]
    if store is not None:
        sources = [img_dir / "zarr.json", store_folds_path(store, config)]
    elif source == "tree":
        sources = _tree_sources(img_dir, config, train + truth)
    else:
        sources = sorted({Path(eye.meta["container"]) for eye in train + truth + inputs})
    num_labels = store.num_labels if store is not None else label_count(img_dir)
    training_eyes: list[TrainingEye] = [*train, *streamed]
    check_fold(config, FoldData(training_eyes, truth, inputs), img_dir, source, normalise, training, num_labels)
    if streamed and training:
        assert store is not None
        training_eyes = [
            *check_streamed_eyes(
                config, store, streamed, img_dir, normalise, EyeShard.of(fabric, len(streamed)), progress
            )
        ]
    if normalise:
        truth, inputs = ([minmax_normalise_eye(eye) for eye in eyes] for eyes in (truth, inputs))
        training_eyes = [minmax_normalise_eye(eye) if isinstance(eye, Eye) else eye for eye in training_eyes]
    return FoldData(training_eyes, truth, inputs, sources, store)


def network_inputs(
    config: ExperimentConfig, eyes: Sequence[TrainingEye], latent_size: int, predicted: list[Eye] | None = None
) -> NetworkInputs:
    """What the data supports: labels and SLO are dropped (with a notice) when some eye lacks them.

    ``eyes`` are trained on (they need labels for the segmentation head); ``predicted`` are
    only predicted (they, too, need an SLO for the en-face input).
    """
    use_slo = config.uses_slo and all(eye.has_slo for eye in [*eyes, *(predicted or [])])
    if config.uses_slo and not use_slo:
        notice("some eyes have no SLO: the en-face input is dropped (INPUT_ENFACE ignored)")
    with_labels = config.MODEL.NUM_CLASSES > 0 and all(eye.has_labels for eye in eyes)
    if config.MODEL.NUM_CLASSES > 0 and not with_labels:
        notice("some eyes have no labels: the segmentation head, loss and metrics are dropped")
    return NetworkInputs(
        use_slo=use_slo, latent_size=latent_size, num_classes=config.MODEL.NUM_CLASSES if with_labels else 0
    )


def volumes(config: ExperimentConfig, eyes: list[Eye], inputs: NetworkInputs, device: torch.device) -> SparseVolumes:
    return SparseVolumes.from_eyes(
        eyes,
        use_labels=inputs.num_classes > 0,
        use_slo=inputs.use_slo,
        slice_scale=config.PREPROCESSING.SLICE_COORD_SCALE,
        device=device,
    )


def population_volumes(
    config: ExperimentConfig,
    eyes: Sequence[TrainingEye],
    inputs: NetworkInputs,
    device: torch.device,
    store: EyeStore | None = None,
) -> TrainingVolumes:
    """The gen-INR's training eyes: kept on the device, or with ``TRAINING.DATA_ON_DEVICE: false``
    streamed from the eye store in ``SETTINGS.IMG_DIR`` (``store``, or opened again; the same
    eyes by id, every ``BSCAN_SUBSAMPLE_FACTOR``-th B-scan, min-max normalised as
    :func:`load_fold` does, by the OCT range found when each was checked)."""
    if config.TRAINING.DATA_ON_DEVICE:
        kept = [eye for eye in eyes if isinstance(eye, Eye)]
        assert len(kept) == len(eyes), "load_fold reads every training eye when TRAINING.DATA_ON_DEVICE is true"
        return volumes(config, kept, inputs, device)
    return StreamedVolumes.from_store(
        store or EyeStore.open(config.SETTINGS.IMG_DIR),
        [eye.eye_id for eye in eyes],
        factor=config.PREPROCESSING.BSCAN_SUBSAMPLE_FACTOR,
        use_labels=inputs.num_classes > 0,
        use_slo=inputs.use_slo,
        slice_scale=config.PREPROCESSING.SLICE_COORD_SCALE,
        device=device,
        normalise=minmax_normalise_for(config, "train_test_geninr"),
        oct_ranges=[eye.oct_range if isinstance(eye, StreamedEye) else None for eye in eyes],
    )


# --- saved models -------------------------------------------------------------------------


def save_model(
    path: Path, network: ImplicitNetwork, config: ExperimentConfig, codes: torch.Tensor | None, eye_ids: list[str]
) -> Path:
    """Everything :func:`load_model` needs: config, inputs, weights, training codes."""
    return save_checkpoint(
        path,
        {
            "config": to_dict(config),
            "inputs": dataclasses.asdict(network.inputs),
            "network": network.state_dict(),
            "codes": None if codes is None else codes.detach().cpu(),
            "eye_ids": eye_ids,
        },
    )


PREDICTION_OVERRIDE_SECTIONS = ("TEST", "SETTINGS", "EVALUATION")
"""Config sections that may change after training (the latent fit, compilation, memory budget)."""


def check_prediction_overrides(overrides: list[str] | None) -> None:
    """Refuse ``KEY.PATH=value`` overrides outside :data:`PREDICTION_OVERRIDE_SECTIONS`."""
    for text in overrides or []:
        section = text.split(".", 1)[0].strip()
        if section not in PREDICTION_OVERRIDE_SECTIONS:
            raise ConfigError(
                f"--set {text!r}: a saved model's {section} settings are fixed; "
                f"only {', '.join(PREDICTION_OVERRIDE_SECTIONS)} keys can be changed"
            )


def load_model(
    path: Path,
    device: torch.device,
    overrides: list[str] | None = None,
) -> tuple[ImplicitNetwork, ExperimentConfig, dict[str, Any]]:
    """A network saved by :func:`save_model`, its config (with ``KEY.PATH=value`` overrides of
    the sections in :data:`PREDICTION_OVERRIDE_SECTIONS`) and the raw record."""
    check_prediction_overrides(overrides)
    record = load_checkpoint(path, device)
    require_keys(
        record,
        ("config", "inputs", "network", "codes"),
        path,
        f"a gen-INR model saved by train_test_geninr.py ({MODEL_FILE})",
    )
    if not isinstance(record["config"], dict) or not isinstance(record["inputs"], dict):
        raise DataError(f"{path}: its config and inputs are not mappings; expected a {MODEL_FILE} of this toolkit")
    raw = apply_overrides(copy.deepcopy(record["config"]), overrides)
    config = from_dict(raw, ExperimentConfig, source=str(path) + (" with --set overrides" if overrides else ""))
    fields = {field.name for field in dataclasses.fields(NetworkInputs)}
    if set(record["inputs"]) != fields:
        raise DataError(
            f"{path}: its network inputs {sorted(record['inputs'])} are not {sorted(fields)}; it was "
            "saved by another version"
        )
    network = build_network(config, NetworkInputs(**record["inputs"])).to(device)
    check_state_matches(network, record["network"], path)
    network.load_state_dict(record["network"])
    return network, config, record


# --- methods ------------------------------------------------------------------------------


def as_method_prediction(dense: DensePrediction) -> MethodPrediction:
    return MethodPrediction(intensity=dense.intensity, labels=dense.labels)


def train_population(experiment: Experiment, data: FoldData) -> tuple[ImplicitNetwork, torch.Tensor | None, bool]:
    """Train (or resume) the gen-INR; returns the network, training codes and whether it finished.

    On several processes each holds and trains the codes of its shard of the training eyes
    (:class:`~anisotropic_interpolation.distributed.EyeShard`); rank 0 writes the checkpoints
    and ``model.pt`` with every code, and every process returns all codes."""
    config = experiment.config
    shard = EyeShard.of(experiment.fabric, len(data.train_inputs))
    inputs = network_inputs(config, data.train_inputs, config.TRAINING.LATENT_CODE.SIZE, data.test_inputs)
    network = build_network(config, inputs).to(experiment.device)
    if experiment.resume:
        check_restorable(network, experiment.run_dir / "checkpoints", experiment.device)
    eyes = [data.train_inputs[index] for index in shard.indices]
    trainer = NetworkTrainer(
        network,
        population_volumes(config, eyes, inputs, experiment.device, data.store),
        config,
        experiment.run_dir / "checkpoints",
        description="gen-INR training",
        progress=experiment.progress and shard.is_main,
        shard=shard,
    )
    outcome = trainer.train(resume=experiment.resume)
    codes = trainer.all_codes()
    if outcome.interrupted:
        if shard.is_main:
            notice(
                f"stopped at epoch {outcome.epochs_done}; the checkpoint is in "
                f"{experiment.run_dir / 'checkpoints'}; continue with --resume"
            )
        return network, codes, False
    if shard.is_main:
        save_model(experiment.run_dir / MODEL_FILE, network, config, codes, [eye.eye_id for eye in data.train_inputs])
    experiment.wait_for_all()
    return network, codes, True


def predict_gen_inr(experiment: Experiment, network: ImplicitNetwork, data: FoldData) -> dict[str, MethodPrediction]:
    """Fit a code per test eye and predict it at its ground-truth B-scan positions."""
    config = experiment.config
    codes = LatentFitter(network, config, experiment.device).fit(data.test_inputs, progress=experiment.progress)
    return {
        sparse.eye_id: as_method_prediction(
            predict_volume(
                network, code, sparse, truth.bscan_positions, device=experiment.device, **prediction_settings(config)
            )
        )
        for sparse, truth, code in zip(data.test_inputs, data.test_truth, codes)
    }


def fit_single_inr(
    config: ExperimentConfig,
    eye: Eye,
    inputs: NetworkInputs,
    device: torch.device,
    checkpoint_dir: Path | None,
    resume: bool,
    progress: bool = True,
) -> tuple[ImplicitNetwork, bool]:
    """One network fitted to one eye's input B-scans; returns it and whether training finished."""
    network = build_network(config, dataclasses.replace(inputs, latent_size=0)).to(device)
    if resume and checkpoint_dir is not None:
        check_restorable(network, checkpoint_dir, device)
    trainer = NetworkTrainer(
        network,
        volumes(config, [eye], inputs, device),
        config,
        checkpoint_dir,
        description=f"single INR {eye.eye_id}",
        progress=progress,
    )
    return network, not trainer.train(resume=resume).interrupted


def load_single_inr(
    config: ExperimentConfig, inputs: NetworkInputs, checkpoint_dir: Path, device: torch.device
) -> ImplicitNetwork:
    """The best weights of a single INR fitted earlier (``checkpoint_dir/best.pt``), for ``--eval``."""
    network = build_network(config, dataclasses.replace(inputs, latent_size=0)).to(device)
    path = checkpoint_dir / BEST_CHECKPOINT
    state = load_checkpoint(path, device)
    require_keys(state, ("network",), path, "a single-INR checkpoint of this script")
    check_state_matches(network, state["network"], path)
    network.load_state_dict(state["network"])
    return network


def predict_single_inr(
    config: ExperimentConfig, experiment: Experiment, data: FoldData, folder: str
) -> dict[str, MethodPrediction] | None:
    """Fit (``--eval``: load) and predict a single INR per test eye (checkpoints under
    ``run_dir/folder/<eye_id>``)."""
    inputs = network_inputs(config, data.test_inputs, 0)
    predictions = {}
    for sparse, truth in zip(data.test_inputs, data.test_truth):
        checkpoint_dir = experiment.run_dir / folder / sparse.eye_id
        if experiment.evaluate_only:
            network, finished = load_single_inr(config, inputs, checkpoint_dir, experiment.device), True
        else:
            network, finished = fit_single_inr(
                config, sparse, inputs, experiment.device, checkpoint_dir, experiment.resume, experiment.progress
            )
        if not finished:
            notice(f"stopped while fitting {sparse.eye_id}; continue with --resume")
            return None
        predictions[sparse.eye_id] = as_method_prediction(
            predict_volume(
                network, None, sparse, truth.bscan_positions, device=experiment.device, **prediction_settings(config)
            )
        )
    return predictions


def single_inr_baseline_config(experiment: Experiment) -> ExperimentConfig:
    """The baseline's config (``EVALUATION.SINGLE_INR_CONFIG`` + its overrides), on this run's data;
    saved as ``single_inr_baseline/config.yaml``, from where ``--eval`` reads it."""
    saved = experiment.run_dir / SINGLE_INR_BASELINE_DIR / CONFIG_FILE
    if experiment.evaluate_only:
        if not saved.is_file():
            raise DataError(
                f"{saved}: not found; --eval of a run with EVALUATION.SINGLE_INR_BASELINE needs the "
                "baseline's config that the run saved there"
            )
        baseline = load_experiment_config(saved)
    else:
        evaluation = experiment.config.EVALUATION
        baseline = load_experiment_config(
            experiment.config_path.parent / evaluation.SINGLE_INR_CONFIG, list(evaluation.SINGLE_INR_OVERRIDES)
        )
    baseline = dataclasses.replace(
        baseline, SETTINGS=experiment.config.SETTINGS, PREPROCESSING=experiment.config.PREPROCESSING
    )
    if not experiment.evaluate_only and not (experiment.resume and saved.is_file()):
        save_config(baseline, saved)
    return baseline


CLASSICAL_LABEL_SOURCE = "true input labels"
"""What the classical baselines' label columns interpolate, named in the tables' method names."""


def evaluate(experiment: Experiment, data: FoldData, methods: dict[str, dict[str, MethodPrediction]]) -> Summary:
    """Add the classical baselines and score every method with both metric sets; prints both summary tables."""
    evaluation = experiment.config.EVALUATION
    predictions: dict[str, dict[str, MethodPrediction]] = {}
    masks = {}
    for sparse, truth in zip(data.test_inputs, data.test_truth):
        per_eye = {name: by_eye[truth.eye_id] for name, by_eye in methods.items()}
        if evaluation.CLASSICAL_BASELINES:
            per_eye.update(classical_baselines(sparse, truth.bscan_positions))
        predictions[truth.eye_id] = per_eye
        masks[truth.eye_id] = input_mask_from_positions(truth.bscan_positions, sparse.bscan_positions)
    labelled = any(eye.has_labels for eye in data.test_truth)
    names = {method: f"{method} ({CLASSICAL_LABEL_SOURCE})" for method in CLASSICAL_METHODS} if labelled else {}
    summary, reference = evaluate_run(
        data.test_truth,
        masks,
        predictions,
        experiment.run_dir / EVALUATION_DIR,
        save_nifti=evaluation.SAVE_NIFTI,
        figures=evaluation.FIGURES,
        lpips=evaluation.LPIPS,
        overwrite=experiment.overwrite or experiment.resume,
        exclude_subjects=list(evaluation.EXCLUDE_SUBJECTS),
        border_sampling=evaluation.BORDER_SAMPLING,
        method_names=names,
    )
    print_summary(summary)
    print("\nThe paper's metric set (summary_reference.md):")
    print_summary(reference)
    return summary


def stopped_notice(experiment: Experiment) -> int:
    """The notice of a run stopped outside a training loop (SIGTERM or Ctrl-C while fitting codes,
    predicting or scoring); returns :data:`EXIT_INTERRUPTED` as a stopped training does."""
    again = (
        "rerun the same command (with --overwrite) to evaluate again"
        if experiment.evaluate_only
        else "continue with --resume (finished training is kept; the evaluation starts again)"
    )
    notice(f"stopped during the evaluation; {experiment.run_dir} holds no complete results; {again}")
    return EXIT_INTERRUPTED


def run_geninr(experiment: Experiment) -> int:
    """Train the gen-INR (``--eval``: load its best model), fit and predict the test eyes, add baselines,
    evaluate. SIGTERM or Ctrl-C stops it with a notice and :data:`EXIT_INTERRUPTED`."""
    try:
        with interrupt_on_sigterm():
            return _run_geninr(experiment)
    except BaseException as exc:  # only stops are handled here
        if not is_stop(exc):
            raise
        return stopped_notice(experiment)


def _run_geninr(experiment: Experiment) -> int:
    data = experiment.data
    if experiment.evaluate_only:
        network = load_model(experiment.run_dir / MODEL_FILE, experiment.device)[0]
    else:
        network, _, finished = train_population(experiment, data)
        leave(experiment.fabric)
        if not experiment.is_main:  # rank 0 fits, predicts and scores the test eyes
            return 0
        if not finished:
            return EXIT_INTERRUPTED
    methods = {GEN_INR: predict_gen_inr(experiment, network, data)}
    if experiment.config.EVALUATION.SINGLE_INR_BASELINE:
        single = predict_single_inr(single_inr_baseline_config(experiment), experiment, data, SINGLE_INR_BASELINE_DIR)
        if single is None:
            return EXIT_INTERRUPTED
        methods[SINGLE_INR] = single
    evaluate(experiment, data, methods)
    return 0


def run_singleinr(experiment: Experiment) -> int:
    """Fit one network per test eye, predict it, add baselines, evaluate. SIGTERM or Ctrl-C stops it
    with a notice and :data:`EXIT_INTERRUPTED`."""
    try:
        with interrupt_on_sigterm():
            return _run_singleinr(experiment)
    except BaseException as exc:  # only stops are handled here
        if not is_stop(exc):
            raise
        return stopped_notice(experiment)


def _run_singleinr(experiment: Experiment) -> int:
    config = experiment.config
    if config.TRAINING.LATENT_CODE.SIZE != 0:
        notice(
            f"the single INR has no latent code; TRAINING.LATENT_CODE.SIZE = {config.TRAINING.LATENT_CODE.SIZE} "
            "is ignored"
        )
    data = experiment.data
    single = predict_single_inr(config, experiment, data, SINGLE_INR_DIR)
    if single is None:
        return EXIT_INTERRUPTED
    evaluate(experiment, data, {SINGLE_INR: single})
    return 0
