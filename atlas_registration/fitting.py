"""The test-time fit: registering one unseen eye to the atlas by fitting a per-eye module.

Every method gives, on the eye's dense grid, the atlas labels and intensities pulled
into the eye (``atlas(x + u(x))``) and the displacement ``u`` in mm (:class:`EyeRegistration`);
this is the convention of ``baselines/classical.py``, so the INR and classical results are
directly comparable. A per-eye module (GINR's latent-only :class:`~atlas_registration.routines.eye_fitting.LatentFit`
or a baseline of ``baselines/inr_fits.py``) is fitted on random strided patches of a possibly
sparse eye (every k-th B-scan at its true position) and then predicted densely
(:func:`register_inr`). Scoring is in :mod:`atlas_registration.evaluation`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.architectures.siren import DeformationNetwork
from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates, mm_per_unit
from atlas_registration.datasets.patches import StridedPatchDataset
from atlas_registration.inference import DisplacementFn, GridPrediction, predict_on_grid
from atlas_registration.losses import LossWeights
from atlas_registration.routines.eye_fitting import EyeFit, LatentFit
from atlas_registration.trainers import build_fit_trainer, inference_device
from retina_data.eye import Eye


@dataclass
class EyeRegistration:
    """One eye registered by one method, on the eye's dense grid ``[H, W, D]``.

    Attributes:
        labels: atlas labels in the eye ``[H, W, D]`` uint8.
        intensity: atlas intensity in the eye ``[H, W, D]`` float32.
        displacement_mm: ``u [3, H, W, D]`` float32, mm.
        seconds: registration time (fit and dense prediction).
        displacement_fn: the INR displacement (normalised coordinates), ``None`` for classical methods.
    """

    labels: np.ndarray
    intensity: np.ndarray
    displacement_mm: np.ndarray
    seconds: float
    displacement_fn: DisplacementFn | None = None

    def bscans(self, step: int) -> EyeRegistration:
        """The registration on every ``step``-th B-scan (the grid of ``eye.subsample(step)``)."""
        return EyeRegistration(
            self.labels[:, :, ::step],
            self.intensity[:, :, ::step],
            self.displacement_mm[:, :, :, ::step],
            self.seconds,
            self.displacement_fn,
        )


def test_weights(cfg: AtlasConfig) -> LossWeights:
    """Loss of the per-eye fits (``TEST``): intensity MSE, optional SSIM, regularisation; no labels."""
    return LossWeights(
        mse=1.0,
        seg=0.0,
        ssim=cfg.TEST.SSIM_WEIGHT,
        reg=cfg.TEST.REG_WEIGHT,
        reg_type=cfg.TRAINING.REG_TYPE,
        reg_points=cfg.TRAINING.REG_POINTS,
    )


def fit_eye(cfg: AtlasConfig, module: EyeFit, eye: Eye, extent_mm: Sequence[float], epochs: int) -> None:
    """Optimise ``module`` on random strided patches of ``eye`` for ``epochs`` epochs."""
    patches = StridedPatchDataset([eye], extent_mm, cfg.DATA.PATCH_SIZE, cfg.DATA.SAMPLE_MODE, cfg.TEST.STEPS_PER_EPOCH)
    loader = DataLoader(patches, batch_size=cfg.TEST.BATCH_SIZE, shuffle=True, num_workers=0)
    build_fit_trainer(cfg.RUNTIME, epochs).fit(module, loader)


def latent_fit(cfg: AtlasConfig, atlas: AtlasINR, deformation: DeformationNetwork) -> LatentFit:
    """GINR inference for one unseen eye: only a fresh latent code trains."""
    return LatentFit(
        atlas,
        deformation,
        test_weights(cfg),
        cfg.TEST.LEARNING_RATE,
        cfg.TEST.LR_SCHEDULER_GAMMA,
        cfg.TRAINING.LATENT_CODE.INIT_STD,
        cfg.TRAINING.LATENT_CODE.INIT,
    )


def _to_mm(prediction: GridPrediction, extent_mm: Sequence[float]) -> np.ndarray:
    """Normalised ``[H, W, D, 3]`` displacement -> ``[3, H, W, D]`` mm."""
    return np.moveaxis(prediction.displacement * mm_per_unit(extent_mm).numpy(), -1, 0).astype(np.float32)


def register_inr(
    cfg: AtlasConfig, module: EyeFit, fit_on: Eye, dense: Eye, extent_mm: Sequence[float], epochs: int
) -> EyeRegistration:
    """Fit ``module`` on ``fit_on`` (the dense eye or a sparse copy) and predict on ``dense``'s grid."""
    started = time.perf_counter()
    fit_eye(cfg, module, fit_on, extent_mm, epochs)
    module.eval().to(inference_device(cfg.RUNTIME))

    def displacement(coords: torch.Tensor) -> torch.Tensor:
        return module.displacement(coords)

    prediction = predict_on_grid(
        module.atlas, grid_coordinates(eye_axes(dense, extent_mm)), displacement, cfg.EVALUATION.CHUNK_POINTS
    )
    return EyeRegistration(
        prediction.labels,
        prediction.intensity,
        _to_mm(prediction, extent_mm),
        time.perf_counter() - started,
        displacement,
    )


def seed_fit(seed: int, eye_index: int, factor: int) -> None:
    """Seed each per-eye fit on its own, so results do not depend on the order of the runs."""
    L.seed_everything(seed * 100003 + eye_index * 101 + factor, workers=True, verbose=False)
