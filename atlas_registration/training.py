"""Training: the atlas INR pretrained on the median atlas, then joint GINR registration of the
training eyes, each a Lightning stage with its checkpoints (``<run>/checkpoints/<stage>/``) and resume.

Step 1 (:func:`pretrain_atlas`): the atlas INR fitted to the median atlas
(:mod:`atlas_registration.median_atlas`), or a pretrained one read from ``ATLAS_MODEL.PATH``
(:func:`load_pretrained_atlas`). Step 2 (:func:`train_registration`): the deformation network,
one latent code per training eye and the atlas trained jointly
(:class:`~atlas_registration.routines.registration.GINRAtlasRegistration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from torch.utils.data import DataLoader

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.atlas_points import AtlasPointsDataset
from atlas_registration.datasets.coordinates import eye_axes
from atlas_registration.datasets.patches import FullEyeDataset, StridedPatchDataset
from atlas_registration.datasets.store_eyes import AtlasEye
from atlas_registration.losses import LossWeights
from atlas_registration.median_atlas import AtlasVolumes
from atlas_registration.routines.atlas_pretraining import AtlasPretraining
from atlas_registration.routines.registration import GINRAtlasRegistration
from atlas_registration.trainers import build_trainer, checkpoint_path, fit
from retina_data.checkpoints import check_state_matches, load_checkpoint, require_keys
from retina_data.errors import ConfigError, DataError

PRETRAIN_STAGE = "pretrain_atlas"
REGISTRATION_STAGE = "registration"


def pretraining_module(cfg: AtlasConfig, num_classes: int) -> AtlasPretraining:
    """A fresh atlas-pretraining module with the ``ATLAS_MODEL`` / ``ATLAS_PRETRAINING`` settings."""
    model, pre = cfg.ATLAS_MODEL, cfg.ATLAS_PRETRAINING
    return AtlasPretraining(
        model.HIDDEN_SIZE,
        model.NUM_LAYERS,
        num_classes,
        model.OMEGA,
        pre.LEARNING_RATE,
        pre.SEG_WEIGHT,
        pre.LR_SCHEDULER_GAMMA,
        cfg.TRAINING.SEG_LOSS,
        model.LINEAR_LAST,
        model.INTENSITY_SIGMOID,
    )


def pretrain_atlas(
    cfg: AtlasConfig,
    atlas: AtlasVolumes,
    reference: AtlasEye,
    extent_mm: Sequence[float],
    num_classes: int,
    run_dir: Path,
    resume: bool,
) -> AtlasPretraining:
    """Fit the atlas INR to the median atlas (on the grid of ``reference``, a training eye)."""
    pre = cfg.ATLAS_PRETRAINING
    module = pretraining_module(cfg, num_classes)
    data = AtlasPointsDataset(
        atlas.intensity, atlas.labels, eye_axes(reference, extent_mm), pre.POINTS_PER_STEP, pre.STEPS_PER_EPOCH
    )
    trainer = build_trainer(
        cfg.RUNTIME, run_dir, PRETRAIN_STAGE, pre.TOTAL_EPOCHS, checkpoint_every=max(pre.TOTAL_EPOCHS // 4, 1)
    )
    last = checkpoint_path(run_dir, PRETRAIN_STAGE)
    fit(
        trainer,
        module,
        DataLoader(data, batch_size=None, num_workers=cfg.RUNTIME.NUM_WORKERS),
        ckpt_path=str(last) if resume and last.is_file() else None,
    )
    trainer.save_checkpoint(last, weights_only=False)
    return module


def load_pretrained_atlas(cfg: AtlasConfig, path: str | Path, num_classes: int) -> AtlasPretraining:
    """A pretrained atlas from ``ATLAS_MODEL.PATH``; its network must match ``ATLAS_MODEL``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ATLAS_MODEL.PATH = {str(path)!r}: checkpoint not found")
    state = load_checkpoint(path)
    what = "an atlas pretraining checkpoint (pretrain_atlas.py: RUN/checkpoints/pretrain_atlas/last.ckpt)"
    require_keys(state, ("state_dict", "hyper_parameters"), path, what)
    try:
        module = AtlasPretraining(**state["hyper_parameters"])
    except TypeError as exc:
        raise DataError(f"{path}: not {what}: {exc}") from exc
    wanted = pretraining_module(cfg, num_classes).hparams
    keys = ("hidden", "num_layers", "num_classes", "omega", "linear_last", "intensity_sigmoid")
    different = [
        f"{k}={module.hparams.get(k)} (config: {wanted[k]})" for k in keys if module.hparams.get(k) != wanted[k]
    ]
    if different:
        raise ConfigError(
            f"ATLAS_MODEL.PATH = {str(path)!r}: the atlas does not match ATLAS_MODEL/LABELS: " + ", ".join(different)
        )
    check_state_matches(module, state["state_dict"], path, "ATLAS_MODEL")
    module.load_state_dict(state["state_dict"])
    return module


def pretrained_atlas(cfg: AtlasConfig, trained_run: Path, num_classes: int) -> AtlasINR:
    """The atlas INR before joint fine-tuning: ``ATLAS_MODEL.PATH`` or the run's pretraining checkpoint."""
    path = cfg.ATLAS_MODEL.PATH or checkpoint_path(trained_run, PRETRAIN_STAGE)
    return load_pretrained_atlas(cfg, path, num_classes).atlas.requires_grad_(False).eval()


def training_weights(cfg: AtlasConfig) -> LossWeights:
    """Loss weights of joint training (``TRAINING``)."""
    t = cfg.TRAINING
    return LossWeights(
        mse=t.MSE_WEIGHT,
        seg=t.SEG_WEIGHT,
        ssim=0.0,
        reg=t.REG_WEIGHT,
        reg_type=t.REG_TYPE,
        reg_points=t.REG_POINTS,
        seg_loss=t.SEG_LOSS,
    )


def deformation_settings(cfg: AtlasConfig) -> dict:
    """The ``DISP_MODEL`` keys as :func:`~atlas_registration.architectures.siren.deformation_network` reads them."""
    disp = cfg.DISP_MODEL
    return {
        "film": disp.FILM,
        "hidden": disp.HIDDEN_SIZE,
        "num_layers": disp.NUM_LAYERS,
        "omega": disp.OMEGA,
        "siren_init": disp.SIREN_INIT,
        "skip_last": disp.SKIP_LAST_LAYER,
        "out_scale": disp.OUT_INIT_SCALE,
    }


def atlas_settings(cfg: AtlasConfig) -> dict:
    """The ``ATLAS_MODEL`` keys as :class:`~atlas_registration.architectures.atlas.AtlasINR` reads them."""
    atlas = cfg.ATLAS_MODEL
    return {
        "hidden": atlas.HIDDEN_SIZE,
        "num_layers": atlas.NUM_LAYERS,
        "omega": atlas.OMEGA,
        "linear_last": atlas.LINEAR_LAST,
        "intensity_sigmoid": atlas.INTENSITY_SIGMOID,
    }


def registration_module(cfg: AtlasConfig, num_eyes: int, num_classes: int) -> GINRAtlasRegistration:
    """A fresh GINR registration module with the config's networks and optimiser settings."""
    t = cfg.TRAINING
    return GINRAtlasRegistration(
        num_eyes=num_eyes,
        num_classes=num_classes,
        latent_size=t.LATENT_CODE.SIZE,
        latent_std=t.LATENT_CODE.INIT_STD,
        latent_init=t.LATENT_CODE.INIT,
        disp=deformation_settings(cfg),
        atlas=atlas_settings(cfg),
        learning_rate=t.LEARNING_RATE,
        latent_lr_factor=t.LATENT_LR_FACTOR,
        atlas_lr_factor=t.ATLAS_LR_FACTOR,
        gamma=t.LR_SCHEDULER_GAMMA,
        weights=asdict(training_weights(cfg)),
        latent_weight=t.LATENT_WEIGHT,
        chunk=cfg.EVALUATION.CHUNK_POINTS,
    )


def train_registration(
    cfg: AtlasConfig,
    train_eyes: Sequence[AtlasEye],
    extent_mm: Sequence[float],
    atlas: AtlasINR,
    num_classes: int,
    run_dir: Path,
    resume: bool,
) -> GINRAtlasRegistration:
    """Train (or, with ``resume``, continue training) GINR registration of ``train_eyes``.

    The atlas starts from ``atlas`` (pretrained) unless a checkpoint is resumed, which
    restores everything: networks, latent codes, optimiser, scheduler and epoch (the entry
    scripts check first that the run and its checkpoint are those of ``cfg``:
    :func:`atlas_registration.pipeline.check_resumable_run`). Each epoch
    draws ``PATCHES_PER_EYE`` patches of every eye, in file order unless ``TRAINING.SHUFFLE``; eyes of
    a store are read patch by patch.
    """
    t = cfg.TRAINING
    module = registration_module(cfg, len(train_eyes), num_classes)
    module.atlas.load_state_dict(atlas.state_dict())
    patches = StridedPatchDataset(train_eyes, extent_mm, cfg.DATA.PATCH_SIZE, cfg.DATA.SAMPLE_MODE, t.PATCHES_PER_EYE)
    val_count = min(t.VAL_EYES, len(train_eyes))
    loaders = {
        "train_dataloaders": DataLoader(
            patches, batch_size=t.BATCH_SIZE, shuffle=t.SHUFFLE, num_workers=cfg.RUNTIME.NUM_WORKERS
        )
    }
    if val_count:
        full = FullEyeDataset(train_eyes[:val_count], extent_mm)
        loaders["val_dataloaders"] = DataLoader(full, batch_size=1, num_workers=cfg.RUNTIME.NUM_WORKERS)
    trainer = build_trainer(
        cfg.RUNTIME, run_dir, REGISTRATION_STAGE, t.TOTAL_EPOCHS, t.CHECKPOINT_EVERY, t.VAL_EVERY if val_count else None
    )
    last = checkpoint_path(run_dir, REGISTRATION_STAGE)
    fit(trainer, module, **loaders, ckpt_path=str(last) if resume and last.is_file() else None)
    trainer.save_checkpoint(last, weights_only=False)
    return module
