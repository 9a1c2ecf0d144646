"""The baselines, each by name, registering one dense test eye to the atlas.

- ``atlas`` (the undeformed atlas), ``affine``, ``bspline``, ``demons``: SimpleITK with
  ``fixed = eye``, ``moving = atlas`` (:mod:`atlas_registration.baselines.classical`);
- ``idir``: an IDIR-style SIREN fitted per eye; ``reference_affine`` and ``reference_inr``: the
  reference code's per-eye fits, the latter to the pretrained atlas
  (:mod:`atlas_registration.baselines.inr_fits`).

Each returns an :class:`~atlas_registration.fitting.EyeRegistration`, scored like GINR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.baselines.classical import register, warp_labels
from atlas_registration.baselines.inr_fits import IdirFit, ReferenceAffineFit, ReferenceInrFit
from atlas_registration.config import AtlasConfig
from atlas_registration.fitting import EyeRegistration, register_inr, seed_fit, test_weights
from atlas_registration.inference import GridPrediction
from atlas_registration.routines.registration import GINRAtlasRegistration
from retina_data.errors import DataError
from retina_data.eye import Eye

CLASSICAL_BASELINES = {"atlas": "atlas_only", "affine": "affine", "bspline": "bspline", "demons": "demons"}


def idir_fit(cfg: AtlasConfig, atlas: AtlasINR) -> IdirFit:
    """The IDIR-style baseline for one eye: a fresh SIREN displacement field."""
    ev = cfg.EVALUATION
    return IdirFit(
        atlas,
        test_weights(cfg),
        ev.IDIR_LEARNING_RATE,
        cfg.TEST.LR_SCHEDULER_GAMMA,
        ev.IDIR_HIDDEN_SIZE,
        ev.IDIR_NUM_LAYERS,
        cfg.DISP_MODEL.OMEGA,
        cfg.DISP_MODEL.OUT_INIT_SCALE,
    )


def reference_affine_fit(cfg: AtlasConfig, atlas: AtlasINR) -> ReferenceAffineFit:
    """The reference's affine-on-coordinates baseline for one eye."""
    return ReferenceAffineFit(atlas, cfg.EVALUATION.REFERENCE_BASELINE_LEARNING_RATE, cfg.TEST.LR_SCHEDULER_GAMMA)


def reference_inr_fit(cfg: AtlasConfig, pretrained_atlas: AtlasINR) -> ReferenceInrFit:
    """The reference's per-eye INR baseline for one eye, registered to the pretrained atlas."""
    return ReferenceInrFit(
        pretrained_atlas,
        cfg.EVALUATION.REFERENCE_BASELINE_LEARNING_RATE,
        cfg.TEST.LR_SCHEDULER_GAMMA,
        cfg.DISP_MODEL.OMEGA,
    )


def register_classical(cfg: AtlasConfig, method: str, atlas_grid: GridPrediction, eye: Eye) -> EyeRegistration:
    """A SimpleITK baseline (or atlas only) with ``fixed = eye``, ``moving = atlas``."""
    options: dict[str, float] = {}
    if method != "atlas":
        options["sampling"] = cfg.EVALUATION.CLASSICAL_SAMPLING
        options["seed"] = cfg.SETTINGS.SEED
        if cfg.EVALUATION.CLASSICAL_ITERATIONS is not None:
            options["iterations"] = cfg.EVALUATION.CLASSICAL_ITERATIONS
    result = register(CLASSICAL_BASELINES[method], eye.oct, atlas_grid.intensity, eye.spacing, **options)
    labels = warp_labels(atlas_grid.labels, result.displacement_mm, eye.spacing)
    return EyeRegistration(labels, result.warped_intensity, result.displacement_mm.astype(np.float32), result.seconds)


def run_baseline(
    cfg: AtlasConfig,
    method: str,
    model: GINRAtlasRegistration,
    pretrained: AtlasINR | None,
    atlas_grid: GridPrediction,
    eye: Eye,
    extent_mm: Sequence[float],
    index: int,
) -> EyeRegistration:
    """One baseline on one dense eye: a per-eye INR or affine fit, or a classical (SimpleITK) method.

    ``pretrained``: the atlas before fine-tuning, which ``reference_inr`` registers to.
    """
    seed_fit(cfg.SETTINGS.SEED, index, 1)
    if method == "idir":
        return register_inr(cfg, idir_fit(cfg, model.atlas), eye, eye, extent_mm, cfg.EVALUATION.IDIR_EPOCHS)
    if method == "reference_affine":
        return register_inr(
            cfg, reference_affine_fit(cfg, model.atlas), eye, eye, extent_mm, cfg.EVALUATION.REFERENCE_BASELINE_EPOCHS
        )
    if method == "reference_inr":
        if pretrained is None:
            raise DataError("baseline 'reference_inr' needs the pretrained atlas")
        return register_inr(
            cfg, reference_inr_fit(cfg, pretrained), eye, eye, extent_mm, cfg.EVALUATION.REFERENCE_BASELINE_EPOCHS
        )
    if method not in CLASSICAL_BASELINES:
        raise DataError(f"unknown baseline {method!r}")
    return register_classical(cfg, method, atlas_grid, eye)
