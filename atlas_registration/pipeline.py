"""The whole flow of one fold: data -> median atlas -> atlas INR -> GINR training -> evaluation.

1. Read the fold (:func:`load_fold`): training eyes from the ``DATA.SUBSMPL_FACTOR`` files,
   test eyes dense, each checked as ``validate`` checks it, and the coordinate extent. From an
   eye store the training eyes are read per patch instead of held.
2. Prepare the run folder (:func:`start_run`; refused if it holds results unless
   ``--overwrite``/``--resume``) and save the resolved config, the run identity
   (:mod:`retina_data.run_identity`: config, eyes, data files) and a run record. ``--resume``
   first compares the run with the recorded one and checks that every stage's ``last.ckpt``
   can be restored into the config's networks; a difference is refused in one line and
   nothing is written.
3. Train (:func:`train`, :mod:`atlas_registration.training`): the median atlas, the atlas INR
   pretrained on it, joint GINR registration of the training eyes.
4. Evaluate (:func:`atlas_registration.evaluation.evaluate`): GINR (latent-only fit) from every
   ``EVALUATION.RESOLUTION_FACTORS``-th B-scan and each baseline from all B-scans, scored by two
   protocols, each with its own tables: ours (every B-scan of the dense eye, 3-D metrics:
   ``results/summary.md``) and the paper's (2-D metrics per B-scan on the B-scans fitted:
   ``results/summary_reference.md``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from atlas_registration.config import RESUME_FREE_KEYS, AtlasConfig, load_atlas_config
from atlas_registration.datasets.coordinates import grid_extent, triple
from atlas_registration.datasets.eyes import FoldEyes, read_fold_eyes
from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.datasets.store_eyes import read_store_fold_eyes, store_files
from atlas_registration.median_atlas import build_median_atlas
from atlas_registration.routines.atlas_pretraining import AtlasPretraining
from atlas_registration.routines.registration import GINRAtlasRegistration
from atlas_registration.trainers import device_name, end_distributed, inference_device, precision, resume_checkpoint
from atlas_registration.training import (
    PRETRAIN_STAGE,
    REGISTRATION_STAGE,
    load_pretrained_atlas,
    pretrain_atlas,
    pretraining_module,
    registration_module,
    train_registration,
)
from retina_data.checkpoints import check_state_matches, load_checkpoint, require_keys
from retina_data.commandline import EXIT_INTERRUPTED, interrupt_on_sigterm, is_stop, notice
from retina_data.config import save_config, to_dict
from retina_data.errors import ConfigError, DataError
from retina_data.eye import Eye
from retina_data.eye_store import is_store
from retina_data.files import check_run_dir
from retina_data.memory import check_fits_for_training
from retina_data.provenance import write_run_record
from retina_data.run_identity import RUN_CONFIG_FILE, RunIdentity, check_resume, resume_identities, write_run_identity
from retina_data.tree import DATASET_FILE, eye_files

CONFIG_FILE = RUN_CONFIG_FILE
NETWORK_SETTINGS = "DISP_MODEL/ATLAS_MODEL/TRAINING.LATENT_CODE"
"""The config sections that shape the networks, named when a checkpoint does not fit them."""


@dataclass
class Fold:
    """The data of one fold as the atlas sees it."""

    eyes: FoldEyes
    mapping: LabelMapping
    extent_mm: tuple[float, float, float]


def global_rank() -> int:
    """This process's rank among the run's processes (0 alone)."""
    return int(rank_zero_only.rank)  # type: ignore[attr-defined]  # Lightning sets it on the function at import


def run_folder(cfg: AtlasConfig, output: str | None) -> Path:
    """``--output``, or ``RESULT_DIR/<PROJECT_NAME>_fold<FOLD>``."""
    if output:
        return Path(output)
    return Path(cfg.SETTINGS.RESULT_DIR or ".") / f"{cfg.SETTINGS.PROJECT_NAME}_fold{cfg.SETTINGS.FOLD}"


def start_run(cfg: AtlasConfig, fold: Fold, script: str, output: str | None, overwrite: bool, resume: bool) -> Path:
    """Prepare the run folder of ``script`` and its records; nothing is written before every check passed.

    Refused: a folder that holds results without ``--overwrite``/``--resume``; with ``--resume``, a
    run that differs from the recorded one and checkpoints that cannot be restored
    (:func:`check_resumable_run`). A resumed run keeps its records as they are; a new one (or
    ``--overwrite``) gets the resolved config (the derived coordinate extent filled in), its
    run identity and a run record. ``overwrite`` also removes the old run's checkpoints and
    logs, so a later ``--resume`` cannot pick them up.
    Under DDP the other ranks re-run the script once training starts; they use the folder rank 0
    prepared.
    """
    cfg.DATA.EXTENT_MM = list(fold.extent_mm)
    check_networks_fit(cfg, fold)
    run_dir = check_run_dir(run_folder(cfg, output), overwrite=overwrite, resume=resume)
    if global_rank() > 0:
        return run_dir
    identity = run_identity(cfg, fold, script)
    resuming = resume and check_resumable_run(cfg, fold, run_dir, identity)
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:  # everything a run writes, so that no eye or table of the old run survives
        for stale in ("checkpoints", "logs", "tensorboard", "atlas", "eyes", "results"):
            shutil.rmtree(run_dir / stale, ignore_errors=True)
    if not resuming:
        save_config(cfg, run_dir / CONFIG_FILE)
        write_run_identity(run_dir, identity)
        write_run_record(
            run_dir,
            device_name(cfg.RUNTIME),
            {"script": script, "precision": precision(cfg.RUNTIME), "resume": resume, "overwrite": overwrite},
        )
    return run_dir


def check_networks_fit(cfg: AtlasConfig, fold: Fold) -> None:
    """Refuse, before anything is allocated or written, networks (deformation, atlas, latent codes)
    whose weights and optimiser state alone exceed the memory of the device they train on."""
    disp, atlas = cfg.DISP_MODEL, cfg.ATLAS_MODEL
    settings = (
        f"DISP_MODEL.HIDDEN_SIZE = {disp.HIDDEN_SIZE}, NUM_LAYERS = "
        f"{disp.NUM_LAYERS}, ATLAS_MODEL.HIDDEN_SIZE = {atlas.HIDDEN_SIZE}, NUM_LAYERS = {atlas.NUM_LAYERS}, "
        f"TRAINING.LATENT_CODE.SIZE = {cfg.TRAINING.LATENT_CODE.SIZE}"
    )
    check_fits_for_training(
        lambda: registration_module(cfg, len(fold.eyes.train), fold.mapping.num_classes),
        inference_device(cfg.RUNTIME),
        settings,
    )


def evaluated_test_eyes(cfg: AtlasConfig, fold: Fold) -> list[Eye]:
    """The first ``EVALUATION.MAX_TEST_EYES`` test eyes, which the evaluation scores; a fold without
    any is refused (checked before training too, so it is not noticed only after the whole run)."""
    eyes = list(fold.eyes.test[: cfg.EVALUATION.MAX_TEST_EYES])
    if not eyes:
        raise DataError(f"{cfg.SETTINGS.FOLD_FILE}: FOLD.{cfg.SETTINGS.FOLD}.TEST holds no eyes to evaluate")
    return eyes


def _resolved(cfg: AtlasConfig) -> dict[str, Any]:
    """The config as a nested mapping, its paths absolute (a run is the same from any working folder)."""
    resolved = to_dict(cfg)
    for section, key in (("SETTINGS", "DATA_DIR"), ("SETTINGS", "FOLD_FILE"), ("ATLAS_MODEL", "PATH")):
        if resolved[section][key] and "://" not in resolved[section][key]:  # an fsspec URL stays as it is
            resolved[section][key] = str(Path(resolved[section][key]).resolve())
    return resolved


def run_identity(cfg: AtlasConfig, fold: Fold, script: str) -> RunIdentity:
    """What determines this run's result: the resolved config without
    :data:`~atlas_registration.config.RESUME_FREE_KEYS`, the script, the fold's eyes per role and
    the size and time of every file read (fold file, ``dataset.yaml``, the training eyes'
    ``oct_flat_subsmpl<k>`` files, the test eyes' dense files, ``ATLAS_MODEL.PATH``; from an eye
    store, its metadata files: :func:`~atlas_registration.datasets.store_eyes.store_files`)."""
    data_dir = Path(cfg.SETTINGS.DATA_DIR).resolve()
    files = [Path(cfg.SETTINGS.FOLD_FILE)]
    if is_store(cfg.SETTINGS.DATA_DIR):
        files += store_files(cfg.SETTINGS.DATA_DIR, [*fold.eyes.train, *fold.eyes.test])
    else:
        files.append(data_dir / DATASET_FILE)
        for eyes, subsample in ((fold.eyes.train, cfg.DATA.SUBSMPL_FACTOR), (fold.eyes.test, 1)):
            for eye in eyes:
                paths = eye_files(data_dir, eye.subject, eye.laterality, subsample)
                files += [paths.oct, paths.labels, paths.slo]
    if cfg.ATLAS_MODEL.PATH:
        files.append(Path(cfg.ATLAS_MODEL.PATH))
    eye_ids = {"train": [eye.eye_id for eye in fold.eyes.train], "test": [eye.eye_id for eye in fold.eyes.test]}
    return RunIdentity.of(script, _resolved(cfg), RESUME_FREE_KEYS, eye_ids, files, data_dir)


def check_resumable_run(cfg: AtlasConfig, fold: Fold, run_dir: Path, identity: RunIdentity) -> bool:
    """``--resume``: whether ``run_dir`` holds a run to continue (``False``: it is empty or new, the run
    starts). Refuses a run that differs from the recorded one (``run_identity.json``; a folder of
    an older version without one: its ``config.yaml``) and stage checkpoints that cannot be
    restored into the config's networks (:func:`check_restorable`)."""
    compared = resume_identities(run_dir, identity, _identity_from_saved_config)
    if compared is None:
        return False
    check_resume(run_dir, *compared)
    check_restorable(cfg, fold, run_dir)
    return True


def _identity_from_saved_config(saved: Path, identity: RunIdentity) -> tuple[RunIdentity, RunIdentity]:
    """A run folder of an older version: its ``config.yaml`` read as a config (keys added since take
    their defaults); the eyes and files are unknown."""
    recorded = RunIdentity.of(
        identity.script or "", _resolved(load_atlas_config(saved)), RESUME_FREE_KEYS, {}, [], saved.parent
    )
    return replace(recorded, script=None, eyes=None, files=None), identity


def check_restorable(cfg: AtlasConfig, fold: Fold, run_dir: Path) -> None:
    """Each stage's ``last.ckpt`` (:func:`~atlas_registration.trainers.resume_checkpoint`) must be a
    readable Lightning training checkpoint whose weights fit the networks of ``cfg`` (else one
    line, before Lightning restores anything or a failed restore could write)."""
    classes = fold.mapping.num_classes
    stages: dict[str, Callable[[], GINRAtlasRegistration | AtlasPretraining]] = {
        REGISTRATION_STAGE: lambda: registration_module(cfg, len(fold.eyes.train), classes)
    }
    if not cfg.ATLAS_MODEL.PATH:
        stages[PRETRAIN_STAGE] = lambda: pretraining_module(cfg, classes)
    for stage, module in stages.items():
        path = resume_checkpoint(run_dir, stage)
        if path is None:
            continue
        state = load_checkpoint(path)
        require_keys(
            state,
            ("state_dict", "optimizer_states", "epoch"),
            path,
            f"a Lightning training checkpoint of the {stage} stage",
        )
        check_state_matches(module(), state["state_dict"], path, NETWORK_SETTINGS)


def load_fold(cfg: AtlasConfig) -> Fold:
    """Read the fold's eyes (training eyes from the ``DATA.SUBSMPL_FACTOR`` files, test eyes dense) and fix
    the coordinate extent (``DATA.EXTENT_MM`` or the first training eye's grid).

    ``SETTINGS.DATA_DIR`` an eye store (:func:`retina_data.eye_store.is_store`): the training eyes
    stay in the store and are read per patch (:mod:`atlas_registration.datasets.store_eyes`).
    """
    data = cfg.SETTINGS.DATA_DIR
    if not data:
        raise ConfigError(
            "SETTINGS.DATA_DIR is empty: set it to the retina_data NIfTI tree "
            "(<subject>/<OD|OS>/oct_flat_<od|os>.nii.gz) or an eye store (.zarr), or pass "
            "--set SETTINGS.DATA_DIR=PATH"
        )
    mapping = LabelMapping.from_config(cfg.LABELS.MAPPING, cfg.LABELS.NAMES)
    if is_store(data):
        if cfg.DATA.CACHE_DIR:
            raise ConfigError(
                f"DATA.CACHE_DIR = {cfg.DATA.CACHE_DIR!r}: not used with an eye store "
                f"(SETTINGS.DATA_DIR = {data!r} is read lazily); expected ''"
            )
        eyes = read_store_fold_eyes(
            data,
            cfg.SETTINGS.FOLD_FILE,
            cfg.SETTINGS.FOLD,
            mapping,
            cfg.DATA.FLIP_OS,
            cfg.DATA.SUBSMPL_FACTOR,
            progress=cfg.RUNTIME.PROGRESS_BAR and global_rank() == 0,
        )
    else:
        eyes = read_fold_eyes(
            data,
            cfg.SETTINGS.FOLD_FILE,
            cfg.SETTINGS.FOLD,
            mapping,
            cfg.DATA.FLIP_OS,
            cfg.DATA.SUBSMPL_FACTOR,
            cfg.DATA.CACHE_DIR or None,
        )
    reference = eyes.train[0]
    extent = triple(cfg.DATA.EXTENT_MM) if cfg.DATA.EXTENT_MM else grid_extent(reference.shape, reference.spacing)
    return Fold(eyes, mapping, extent)


def build_atlas(cfg: AtlasConfig, fold: Fold, run_dir: Path, resume: bool) -> AtlasPretraining:
    """The median atlas (NIfTI) and the atlas INR: pretrained here or loaded from ``ATLAS_MODEL.PATH``."""
    median = build_median_atlas(
        fold.eyes.train, run_dir / "atlas" / "median", reuse=resume, class_names=fold.mapping.names
    )
    if cfg.ATLAS_MODEL.PATH:
        return load_pretrained_atlas(cfg, cfg.ATLAS_MODEL.PATH, fold.mapping.num_classes)
    return pretrain_atlas(cfg, median, fold.eyes.train[0], fold.extent_mm, fold.mapping.num_classes, run_dir, resume)


def train(cfg: AtlasConfig, fold: Fold, run_dir: Path, resume: bool) -> GINRAtlasRegistration:
    """Median atlas, atlas pretraining and joint GINR training of the fold's training eyes.

    Under DDP every rank trains; afterwards the process group is left, and only rank 0
    (``model.trainer.is_global_zero``) should go on to evaluate.
    """
    pretrained = build_atlas(cfg, fold, run_dir, resume)
    model = train_registration(
        cfg, fold.eyes.train, fold.extent_mm, pretrained.atlas, fold.mapping.num_classes, run_dir, resume
    )
    end_distributed()
    return model


def _is_stop(exc: BaseException) -> bool:
    """Whether ``exc`` is how SIGTERM or Ctrl-C ends a block: Lightning's :class:`SIGTERMException`
    (a silent exit 0) in a per-eye fit, or what :func:`~retina_data.commandline.is_stop` tells (a
    :class:`KeyboardInterrupt`, also wrapped, e.g. in the ``exit(1)`` Lightning makes of it)."""
    return isinstance(exc, SIGTERMException) or is_stop(exc)


def evaluate_until_stopped(evaluation: Callable[[], object], run_dir: Path) -> int:
    """Run ``evaluation``; SIGTERM or Ctrl-C during it (per-eye fits, dense predictions, scoring)
    ends with a notice and :data:`~retina_data.commandline.EXIT_INTERRUPTED` (before: exit 0 with
    no word, or 143). Returns the exit code."""
    try:
        with interrupt_on_sigterm():
            evaluation()
    except BaseException as exc:  # only stops are handled, anything else is re-raised
        if not _is_stop(exc):
            raise
        notice(
            f"stopped during the evaluation; {run_dir} holds no complete results; continue with --resume "
            "(finished training is kept; the evaluation starts again)"
        )
        return EXIT_INTERRUPTED
    return 0


def load_trained(checkpoint: str | Path, fold: Fold) -> GINRAtlasRegistration:
    """A trained GINR registration from its Lightning checkpoint, checked against the fold's classes.

    A file that is not one (an interpolation checkpoint, an atlas pretraining checkpoint, a
    damaged or foreign file) is refused in one line naming what it is.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint not found (train first, or pass --checkpoint)")
    state = load_checkpoint(checkpoint)
    what = "a GINR registration checkpoint (RUN/checkpoints/registration/last.ckpt)"
    require_keys(state, ("state_dict", "hyper_parameters"), checkpoint, what)
    hparams = dict(state["hyper_parameters"])
    if "num_eyes" not in hparams:
        kind = " (an atlas pretraining checkpoint?)" if "seg_weight" in hparams else ""
        raise DataError(f"{checkpoint}: not {what}: its hyper-parameters lack num_eyes{kind}")
    try:
        model = GINRAtlasRegistration(**hparams)
    except (TypeError, KeyError) as exc:
        raise DataError(f"{checkpoint}: not {what} of this version: {exc}") from exc
    check_state_matches(model, state["state_dict"], checkpoint, NETWORK_SETTINGS)
    model.load_state_dict(state["state_dict"])
    if model.num_classes != fold.mapping.num_classes:
        raise DataError(f"{checkpoint}: atlas has {model.num_classes} classes, LABELS gives {fold.mapping.num_classes}")
    return model
