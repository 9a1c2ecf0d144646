"""The whole flow of one fold: data -> median atlas -> atlas INR -> GINR training -> evaluation.

Evaluation registers every test eye with GINR (latent-only inference) from every
``EVALUATION.RESOLUTION_FACTORS``-th B-scan and with each baseline from all B-scans, scores
all of them on every B-scan of the dense eye, and writes tables, volumes and figures.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from tqdm import tqdm

from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.coordinates import grid_extent
from atlas_registration.datasets.eyes import FoldEyes, read_fold_eyes
from atlas_registration.experiments.atlas_building import build_median_atlas, load_pretrained_atlas, pretrain_atlas
from atlas_registration.experiments.eye_registration import (
    CLASSICAL_BASELINES,
    EyeRegistration,
    atlas_on_eye_grid,
    idir_fit,
    latent_fit,
    register_classical,
    register_inr,
    score,
    seed_fit,
)
from atlas_registration.experiments.outputs import write_atlas_volumes, write_eye_outputs
from atlas_registration.experiments.training import train_registration
from atlas_registration.routines.atlas_pretraining import AtlasPretraining
from atlas_registration.routines.prediction import GridPrediction
from atlas_registration.routines.registration import GINRAtlasRegistration
from atlas_registration.routines.trainer import device_name, end_distributed, inference_device, precision
from atlas_registration.utilities.evaluation import resolution_summary, resolution_table, write_metrics_tables
from atlas_registration.utilities.figures import plot_resolution
from atlas_registration.utilities.label_mapping import LabelMapping
from retina_data.config import save_config
from retina_data.errors import ConfigError, DataError
from retina_data.eye import Eye
from retina_data.files import atomic_write_text, prepare_run_dir
from retina_data.provenance import write_run_record


@dataclass
class Fold:
    """The data of one fold as the atlas sees it."""

    eyes: FoldEyes
    mapping: LabelMapping
    extent_mm: tuple[float, float, float]


def run_folder(cfg: AtlasConfig, output: str | None) -> Path:
    """``--output``, or ``RESULT_DIR/<PROJECT_NAME>_fold<FOLD>``."""
    if output:
        return Path(output)
    return Path(cfg.SETTINGS.RESULT_DIR or ".") / f"{cfg.SETTINGS.PROJECT_NAME}_fold{cfg.SETTINGS.FOLD}"


def start_run(cfg: AtlasConfig, output: str | None, overwrite: bool, resume: bool) -> Path:
    """Prepare the run folder (refusing old results without --overwrite/--resume) and its records.

    ``overwrite`` also removes the old run's checkpoints and logs, so a later ``--resume`` cannot pick
    them up.
    Under DDP the other ranks re-run the script once training starts; they use the folder rank 0
    prepared.
    """
    if rank_zero_only.rank > 0:
        return run_folder(cfg, output)
    run_dir = prepare_run_dir(run_folder(cfg, output), overwrite=overwrite, resume=resume)
    if overwrite:
        for stale in ("checkpoints", "logs", "tensorboard"):
            shutil.rmtree(run_dir / stale, ignore_errors=True)
    write_run_record(run_dir, device_name(cfg.RUNTIME), {"precision": precision(cfg.RUNTIME), "resume": resume,
                                                         "overwrite": overwrite})
    return run_dir


def load_fold(cfg: AtlasConfig) -> Fold:
    """Read the fold's eyes (training eyes from the ``DATA.SUBSMPL_FACTOR`` files, test eyes dense) and fix
    the coordinate extent (``DATA.EXTENT_MM`` or the first training eye's grid)."""
    if not cfg.SETTINGS.DATA_DIR:
        raise ConfigError("SETTINGS.DATA_DIR is empty: set it to the retina_data NIfTI tree "
                          "(<subject>/<OD|OS>/oct_flat_<od|os>.nii.gz) or pass --set SETTINGS.DATA_DIR=PATH")
    mapping = LabelMapping.from_config(cfg.LABELS.MAPPING, cfg.LABELS.NAMES)
    eyes = read_fold_eyes(cfg.SETTINGS.DATA_DIR, cfg.SETTINGS.FOLD_FILE, cfg.SETTINGS.FOLD, mapping, cfg.DATA.FLIP_OS,
                          cfg.DATA.SUBSMPL_FACTOR, cfg.DATA.CACHE_DIR or None)
    reference = eyes.train[0]
    extent = tuple(cfg.DATA.EXTENT_MM) if cfg.DATA.EXTENT_MM else grid_extent(reference.shape, reference.spacing)
    return Fold(eyes, mapping, extent)  # type: ignore[arg-type]


def save_resolved_config(cfg: AtlasConfig, fold: Fold, run_dir: Path) -> None:
    """The config as run, with the derived coordinate extent filled in."""
    cfg.DATA.EXTENT_MM = list(fold.extent_mm)
    save_config(cfg, run_dir / "config.yaml")


def build_atlas(cfg: AtlasConfig, fold: Fold, run_dir: Path, resume: bool) -> AtlasPretraining:
    """The median atlas (NIfTI) and the atlas INR: pretrained here or loaded from ``ATLAS_MODEL.PATH``."""
    median = build_median_atlas(fold.eyes.train, run_dir / "atlas" / "median", reuse=resume)
    if cfg.ATLAS_MODEL.PATH:
        return load_pretrained_atlas(cfg, cfg.ATLAS_MODEL.PATH, fold.mapping.num_classes)
    return pretrain_atlas(cfg, median, fold.eyes.train[0], fold.extent_mm, fold.mapping.num_classes, run_dir, resume)


def train(cfg: AtlasConfig, fold: Fold, run_dir: Path, resume: bool) -> GINRAtlasRegistration:
    """Median atlas, atlas pretraining and joint GINR training of the fold's training eyes.

    Under DDP every rank trains; afterwards the process group is left, and only rank 0
    (``model.trainer.is_global_zero``) should go on to evaluate.
    """
    pretrained = build_atlas(cfg, fold, run_dir, resume)
    model = train_registration(cfg, fold.eyes.train, fold.extent_mm, pretrained.atlas, fold.mapping.num_classes,
                               run_dir, resume)
    end_distributed()
    return model


def evaluate(cfg: AtlasConfig, fold: Fold, model: GINRAtlasRegistration, run_dir: Path,
             factors: Sequence[int] | None = None, baselines: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Register and score the fold's test eyes; writes atlas volumes, per-eye outputs, tables and figures.

    Returns the metric rows (one per eye, method and B-scan factor).
    """
    ev = cfg.EVALUATION
    factors = list(ev.RESOLUTION_FACTORS if factors is None else factors)
    baselines = list(ev.BASELINES if baselines is None else baselines)
    test_eyes = fold.eyes.test[: ev.MAX_TEST_EYES]
    if not test_eyes:
        raise DataError(f"{cfg.SETTINGS.FOLD_FILE}: FOLD.{cfg.SETTINGS.FOLD}.TEST holds no eyes to evaluate")
    model.freeze()
    atlas_shape = fold.eyes.train[0].shape
    num_classes, chunk = fold.mapping.num_classes, ev.CHUNK_POINTS
    for shape in [atlas_shape, *map(tuple, ev.ATLAS_SHAPES)]:
        write_atlas_volumes(model.atlas, shape, fold.extent_mm, run_dir / "atlas" / "inr_{}x{}x{}".format(*shape),
                            chunk, fold.mapping.names, ev.FIGURES)
    rows: list[dict[str, Any]] = []
    jobs = [(i, eye, f) for i, eye in enumerate(test_eyes) for f in factors]
    for index, eye, factor in tqdm(jobs, desc="GINR inference", unit="fit"):
        if eye.shape[2] < factor:
            raise DataError(f"eye {eye.eye_id}: {eye.shape[2]} B-scans cannot be subsampled by {factor}")
        seed_fit(cfg.SETTINGS.SEED, index, factor)
        registration = register_inr(cfg, latent_fit(cfg, model.atlas, model.deformation), eye.subsample(factor),
                                    eye, fold.extent_mm, cfg.TEST.TOTAL_EPOCHS)
        rows.append({"eye_id": eye.eye_id, "method": "ginr", "factor": factor,
                     "bscans": len(range(0, eye.shape[2], factor)), **score(registration, eye, num_classes)})
        if factor == 1:
            before = atlas_on_eye_grid(model.atlas, eye, fold.extent_mm, chunk).labels
            write_eye_outputs(registration, eye, run_dir / "eyes" / eye.eye_id, cfg.DATA.FLIP_OS, atlas_shape,
                              fold.extent_mm, chunk, before, inference_device(cfg.RUNTIME), ev.FIGURES)
    for index, eye in enumerate(tqdm(test_eyes, desc="baselines", unit="eye")):
        atlas_grid = atlas_on_eye_grid(model.atlas, eye, fold.extent_mm, chunk)
        for method in baselines:
            registration = run_baseline(cfg, method, model, atlas_grid, eye, fold.extent_mm, index)
            rows.append({"eye_id": eye.eye_id, "method": method, "factor": 1, "bscans": eye.shape[2],
                         **score(registration, eye, num_classes)})
    write_tables(rows, run_dir / "results", factors, ev.FIGURES)
    return rows


def run_baseline(cfg: AtlasConfig, method: str, model: GINRAtlasRegistration, atlas_grid: GridPrediction,
                 eye: Eye, extent_mm: Sequence[float], index: int) -> EyeRegistration:
    """One baseline on one dense eye: the IDIR-style INR or a classical (SimpleITK) method."""
    if method == "idir":
        seed_fit(cfg.SETTINGS.SEED, index, 1)
        return register_inr(cfg, idir_fit(cfg, model.atlas), eye, eye, extent_mm, cfg.EVALUATION.IDIR_EPOCHS)
    if method not in CLASSICAL_BASELINES:
        raise DataError(f"unknown baseline {method!r}")
    return register_classical(cfg, method, atlas_grid, eye)


def write_tables(rows: list[dict[str, Any]], out_dir: Path, factors: Sequence[int], figures: bool) -> None:
    """Per-eye CSVs, summary (CSV + Markdown), the resolution table and its plot."""
    write_metrics_tables(rows, out_dir, overwrite=True)
    ginr_rows = [row for row in rows if row["method"] == "ginr"]
    atlas_rows = [row for row in rows if row["method"] == "atlas"]
    table = resolution_table(ginr_rows + atlas_rows, "dice_mean", factors)
    atomic_write_text(out_dir / "resolution.md", table + "\n")
    if figures:
        plot_resolution(resolution_summary(ginr_rows, "dice_mean"), out_dir / "resolution.png", overwrite=True)


def load_trained(checkpoint: str | Path, fold: Fold) -> GINRAtlasRegistration:
    """A trained GINR registration from its Lightning checkpoint, checked against the fold's classes."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint not found (train first, or pass --checkpoint)")
    model = GINRAtlasRegistration.load_from_checkpoint(checkpoint, map_location="cpu")
    if model.hparams.num_classes != fold.mapping.num_classes:
        raise DataError(f"{checkpoint}: atlas has {model.hparams.num_classes} classes, "
                        f"LABELS gives {fold.mapping.num_classes}")
    return model
