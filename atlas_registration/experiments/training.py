"""Step 2: joint GINR atlas registration of the training eyes (with checkpoints and resume)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from torch.utils.data import DataLoader

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.patches import FullEyeDataset, StridedPatchDataset
from atlas_registration.routines.losses import LossWeights
from atlas_registration.routines.registration import GINRAtlasRegistration
from atlas_registration.routines.trainer import build_trainer, checkpoint_path, fit
from retina_data.errors import DataError
from retina_data.eye import Eye

REGISTRATION_STAGE = "registration"


def training_weights(cfg: AtlasConfig) -> LossWeights:
    """Loss weights of joint training (``TRAINING``)."""
    t = cfg.TRAINING
    return LossWeights(mse=t.MSE_WEIGHT, seg=t.SEG_WEIGHT, ssim=0.0, reg=t.REG_WEIGHT, reg_type=t.REG_TYPE,
                       reg_points=t.REG_POINTS, seg_loss=t.SEG_LOSS)


def deformation_settings(cfg: AtlasConfig) -> dict:
    """The ``DISP_MODEL`` keys as :func:`~atlas_registration.architectures.siren.deformation_network` reads them."""
    disp = cfg.DISP_MODEL
    return {"film": disp.FILM, "hidden": disp.HIDDEN_SIZE, "num_layers": disp.NUM_LAYERS, "omega": disp.OMEGA,
            "siren_init": disp.SIREN_INIT, "skip_last": disp.SKIP_LAST_LAYER, "out_scale": disp.OUT_INIT_SCALE}


def atlas_settings(cfg: AtlasConfig) -> dict:
    """The ``ATLAS_MODEL`` keys as :class:`~atlas_registration.architectures.atlas.AtlasINR` reads them."""
    atlas = cfg.ATLAS_MODEL
    return {"hidden": atlas.HIDDEN_SIZE, "num_layers": atlas.NUM_LAYERS, "omega": atlas.OMEGA,
            "linear_last": atlas.LINEAR_LAST, "intensity_sigmoid": atlas.INTENSITY_SIGMOID}


def registration_module(cfg: AtlasConfig, num_eyes: int, num_classes: int) -> GINRAtlasRegistration:
    """A fresh GINR registration module with the config's networks and optimiser settings."""
    t = cfg.TRAINING
    return GINRAtlasRegistration(
        num_eyes=num_eyes, num_classes=num_classes, latent_size=t.LATENT_CODE.SIZE,
        latent_std=t.LATENT_CODE.INIT_STD, latent_init=t.LATENT_CODE.INIT,
        disp=deformation_settings(cfg), atlas=atlas_settings(cfg),
        learning_rate=t.LEARNING_RATE, latent_lr_factor=t.LATENT_LR_FACTOR, atlas_lr_factor=t.ATLAS_LR_FACTOR,
        gamma=t.LR_SCHEDULER_GAMMA, weights=asdict(training_weights(cfg)), latent_weight=t.LATENT_WEIGHT,
        chunk=cfg.EVALUATION.CHUNK_POINTS,
    )


def train_registration(cfg: AtlasConfig, train_eyes: Sequence[Eye], extent_mm: Sequence[float], atlas: AtlasINR,
                       num_classes: int, run_dir: Path, resume: bool) -> GINRAtlasRegistration:
    """Train (or, with ``resume``, continue training) GINR registration of ``train_eyes``.

    The atlas starts from ``atlas`` (pretrained) unless a checkpoint is resumed, which
    restores everything: networks, latent codes, optimiser, scheduler and epoch. Each epoch
    draws ``PATCHES_PER_EYE`` patches of every eye, in file order unless ``TRAINING.SHUFFLE``.
    """
    t = cfg.TRAINING
    module = registration_module(cfg, len(train_eyes), num_classes)
    module.atlas.load_state_dict(atlas.state_dict())
    patches = StridedPatchDataset(train_eyes, extent_mm, cfg.DATA.PATCH_SIZE, cfg.DATA.SAMPLE_MODE,
                                  t.PATCHES_PER_EYE)
    val_count = min(t.VAL_EYES, len(train_eyes))
    loaders = {"train_dataloaders": DataLoader(patches, batch_size=t.BATCH_SIZE, shuffle=t.SHUFFLE,
                                               num_workers=cfg.RUNTIME.NUM_WORKERS)}
    if val_count:
        full = FullEyeDataset(train_eyes[:val_count], extent_mm)
        loaders["val_dataloaders"] = DataLoader(full, batch_size=1, num_workers=cfg.RUNTIME.NUM_WORKERS)
    trainer = build_trainer(cfg.RUNTIME, run_dir, REGISTRATION_STAGE, t.TOTAL_EPOCHS, t.CHECKPOINT_EVERY,
                            t.VAL_EVERY if val_count else None)
    last = checkpoint_path(run_dir, REGISTRATION_STAGE)
    if resume and last.is_file():
        stored = GINRAtlasRegistration.load_from_checkpoint(last, map_location="cpu").hparams
        if stored["num_eyes"] != len(train_eyes):
            raise DataError(f"{last}: trained on {stored['num_eyes']} eyes, the fold now has {len(train_eyes)}; "
                            "resume with the same data and fold")
    fit(trainer, module, **loaders, ckpt_path=str(last) if resume and last.is_file() else None)
    trainer.save_checkpoint(last)
    return module
