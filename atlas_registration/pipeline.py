"""The whole flow of one fold: data -> median atlas -> atlas INR -> GINR training -> evaluation.

1. Prepare the run folder (refused if it holds results unless ``--overwrite``/``--resume``)
   with a run record, and save the resolved config.
2. Read the fold (:func:`load_fold`): training eyes from the ``DATA.SUBSMPL_FACTOR`` files,
   test eyes dense, and the coordinate extent.
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
from dataclasses import dataclass
from pathlib import Path

from lightning.fabric.utilities.rank_zero import rank_zero_only

from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.coordinates import grid_extent
from atlas_registration.datasets.eyes import FoldEyes, read_fold_eyes
from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.median_atlas import build_median_atlas
from atlas_registration.routines.atlas_pretraining import AtlasPretraining
from atlas_registration.routines.registration import GINRAtlasRegistration
from atlas_registration.trainers import device_name, end_distributed, precision
from atlas_registration.training import load_pretrained_atlas, pretrain_atlas, train_registration
from retina_data.config import save_config
from retina_data.errors import ConfigError, DataError
from retina_data.files import prepare_run_dir
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
