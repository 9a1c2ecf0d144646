"""The atlas before registration: the median atlas and the atlas INR pretrained on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch.utils.data import DataLoader

from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.coordinates import eye_axes
from atlas_registration.routines.atlas_pretraining import AtlasPointsDataset, AtlasPretraining
from atlas_registration.routines.trainer import build_trainer, checkpoint_path, fit
from atlas_registration.utilities.median_atlas import (
    ATLAS_INTENSITY_FILE,
    ATLAS_LABELS_FILE,
    AtlasVolumes,
    median_atlas,
    save_atlas_nifti,
)
from retina_data.errors import ConfigError
from retina_data.eye import Eye
from retina_data.nifti import read_nifti

PRETRAIN_STAGE = "pretrain_atlas"


def build_median_atlas(train_eyes: Sequence[Eye], out_dir: Path, reuse: bool) -> AtlasVolumes:
    """The median atlas of the (prepared) training eyes, written as NIfTI into ``out_dir``.

    The eyes are read from the ``DATA.SUBSMPL_FACTOR`` files and already hold atlas labels (and,
    with ``DATA.FLIP_OS``, atlas orientation), so no mapping or mirroring is applied again. With ``reuse`` an atlas already in ``out_dir`` is read instead.
    """
    intensity_path, labels_path = out_dir / ATLAS_INTENSITY_FILE, out_dir / ATLAS_LABELS_FILE
    if reuse and intensity_path.is_file() and labels_path.is_file():
        intensity = read_nifti(intensity_path)
        return AtlasVolumes(intensity.array, read_nifti(labels_path).array, tuple(intensity.spacing),
                            tuple(eye.eye_id for eye in train_eyes))
    atlas = median_atlas(train_eyes, mirror_os=False, progress=True)
    save_atlas_nifti(atlas, out_dir, overwrite=True)
    return atlas


def pretraining_module(cfg: AtlasConfig, num_classes: int) -> AtlasPretraining:
    """A fresh atlas-pretraining module with the ``ATLAS_MODEL`` / ``ATLAS_PRETRAINING`` settings."""
    model, pre = cfg.ATLAS_MODEL, cfg.ATLAS_PRETRAINING
    return AtlasPretraining(model.HIDDEN_SIZE, model.NUM_LAYERS, num_classes, model.OMEGA, pre.LEARNING_RATE,
                            pre.SEG_WEIGHT, pre.LR_SCHEDULER_GAMMA, cfg.TRAINING.SEG_LOSS, model.LINEAR_LAST,
                            model.INTENSITY_SIGMOID)


def pretrain_atlas(cfg: AtlasConfig, atlas: AtlasVolumes, reference: Eye, extent_mm: Sequence[float],
                   num_classes: int, run_dir: Path, resume: bool) -> AtlasPretraining:
    """Fit the atlas INR to the median atlas (on the grid of ``reference``, a training eye)."""
    pre = cfg.ATLAS_PRETRAINING
    module = pretraining_module(cfg, num_classes)
    data = AtlasPointsDataset(atlas.intensity, atlas.labels, eye_axes(reference, extent_mm), pre.POINTS_PER_STEP,
                              pre.STEPS_PER_EPOCH)
    trainer = build_trainer(cfg.RUNTIME, run_dir, PRETRAIN_STAGE, pre.TOTAL_EPOCHS,
                            checkpoint_every=max(pre.TOTAL_EPOCHS // 4, 1))
    last = checkpoint_path(run_dir, PRETRAIN_STAGE)
    fit(trainer, module, DataLoader(data, batch_size=None, num_workers=cfg.RUNTIME.NUM_WORKERS),
        ckpt_path=str(last) if resume and last.is_file() else None)
    trainer.save_checkpoint(last)
    return module


def load_pretrained_atlas(cfg: AtlasConfig, path: str | Path, num_classes: int) -> AtlasPretraining:
    """A pretrained atlas from ``ATLAS_MODEL.PATH``; its network must match ``ATLAS_MODEL``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ATLAS_MODEL.PATH = {str(path)!r}: checkpoint not found")
    module = AtlasPretraining.load_from_checkpoint(path, map_location="cpu")
    wanted = pretraining_module(cfg, num_classes).hparams
    keys = ("hidden", "num_layers", "num_classes", "omega", "linear_last", "intensity_sigmoid")
    different = [f"{k}={module.hparams.get(k)} (config: {wanted[k]})" for k in keys
                 if module.hparams.get(k) != wanted[k]]
    if different:
        raise ConfigError(f"ATLAS_MODEL.PATH = {str(path)!r}: the atlas does not match ATLAS_MODEL/LABELS: "
                          + ", ".join(different))
    return module
