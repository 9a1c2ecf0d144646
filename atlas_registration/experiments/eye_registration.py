"""Registering one unseen eye to the atlas with each method, all scored the same way.

Every method gives, on the eye's dense grid, the atlas labels and intensities pulled
into the eye (``atlas(x + u(x))``) and the displacement ``u`` in mm; this is the
convention of ``baselines/classical.py``, so the INR and classical results are directly
comparable. The INR methods (GINR latent-only inference, per-eye IDIR) may be fitted on a
sparse eye (every k-th B-scan at its true position). Two protocols score a registration:
:func:`score` (ours: 3-D metrics on every B-scan of the dense eye) and
:func:`score_reference` (the paper's: 2-D metrics per B-scan on the B-scans given).
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
from atlas_registration.architectures.siren import FiLMSiren
from atlas_registration.baselines.classical import register, warp_labels
from atlas_registration.baselines.reference_fits import ReferenceAffineFit, ReferenceInrFit
from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.coordinates import eye_axes, grid_coordinates, mm_per_unit
from atlas_registration.datasets.patches import StridedPatchDataset
from atlas_registration.routines.eye_fitting import EyeFit, IdirFit, LatentFit
from atlas_registration.routines.losses import LossWeights
from atlas_registration.routines.prediction import DisplacementFn, GridPrediction, predict_on_grid
from atlas_registration.routines.trainer import build_fit_trainer, inference_device
from atlas_registration.utilities.bscan_metrics import reference_metrics
from atlas_registration.utilities.evaluation import registration_metrics
from atlas_registration.utilities.jacobian import jacobian_determinant, negative_fraction
from retina_data.eye import Eye

CLASSICAL_BASELINES = {"atlas": "atlas_only", "affine": "affine", "bspline": "bspline", "demons": "demons"}


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
        return EyeRegistration(self.labels[:, :, ::step], self.intensity[:, :, ::step],
                               self.displacement_mm[:, :, :, ::step], self.seconds, self.displacement_fn)


def test_weights(cfg: AtlasConfig) -> LossWeights:
    """Loss of the per-eye fits (``TEST``): intensity MSE, optional SSIM, regularisation; no labels."""
    return LossWeights(mse=1.0, seg=0.0, ssim=cfg.TEST.SSIM_WEIGHT, reg=cfg.TEST.REG_WEIGHT,
                       reg_type=cfg.TRAINING.REG_TYPE, reg_points=cfg.TRAINING.REG_POINTS)


def fit_eye(cfg: AtlasConfig, module: EyeFit, eye: Eye, extent_mm: Sequence[float], epochs: int) -> None:
    """Optimise ``module`` on random strided patches of ``eye`` for ``epochs`` epochs."""
    patches = StridedPatchDataset([eye], extent_mm, cfg.DATA.PATCH_SIZE, cfg.DATA.SAMPLE_MODE,
                                  cfg.TEST.STEPS_PER_EPOCH)
    loader = DataLoader(patches, batch_size=cfg.TEST.BATCH_SIZE, shuffle=True, num_workers=0)
    build_fit_trainer(cfg.RUNTIME, epochs).fit(module, loader)


def latent_fit(cfg: AtlasConfig, atlas: AtlasINR, deformation: FiLMSiren) -> LatentFit:
    """GINR inference for one unseen eye: only a fresh latent code trains."""
    return LatentFit(atlas, deformation, test_weights(cfg), cfg.TEST.LEARNING_RATE, cfg.TEST.LR_SCHEDULER_GAMMA,
                     cfg.TRAINING.LATENT_CODE.INIT_STD, cfg.TRAINING.LATENT_CODE.INIT)


def idir_fit(cfg: AtlasConfig, atlas: AtlasINR) -> IdirFit:
    """The IDIR-style baseline for one eye: a fresh SIREN displacement field."""
    ev = cfg.EVALUATION
    return IdirFit(atlas, test_weights(cfg), ev.IDIR_LEARNING_RATE, cfg.TEST.LR_SCHEDULER_GAMMA,
                   ev.IDIR_HIDDEN_SIZE, ev.IDIR_NUM_LAYERS, cfg.DISP_MODEL.OMEGA, cfg.DISP_MODEL.OUT_INIT_SCALE)


def reference_affine_fit(cfg: AtlasConfig, atlas: AtlasINR) -> ReferenceAffineFit:
    """The reference's affine-on-coordinates baseline for one eye."""
    return ReferenceAffineFit(atlas, cfg.EVALUATION.REFERENCE_BASELINE_LEARNING_RATE, cfg.TEST.LR_SCHEDULER_GAMMA)


def reference_inr_fit(cfg: AtlasConfig, pretrained_atlas: AtlasINR) -> ReferenceInrFit:
    """The reference's per-eye INR baseline for one eye, registered to the pretrained atlas."""
    return ReferenceInrFit(pretrained_atlas, cfg.EVALUATION.REFERENCE_BASELINE_LEARNING_RATE,
                           cfg.TEST.LR_SCHEDULER_GAMMA, cfg.DISP_MODEL.OMEGA)


def _to_mm(prediction: GridPrediction, extent_mm: Sequence[float]) -> np.ndarray:
    """Normalised ``[H, W, D, 3]`` displacement -> ``[3, H, W, D]`` mm."""
    return np.moveaxis(prediction.displacement * mm_per_unit(extent_mm).numpy(), -1, 0).astype(np.float32)


def register_inr(cfg: AtlasConfig, module: EyeFit, fit_on: Eye, dense: Eye, extent_mm: Sequence[float],
                 epochs: int) -> EyeRegistration:
    """Fit ``module`` on ``fit_on`` (the dense eye or a sparse copy) and predict on ``dense``'s grid."""
    started = time.perf_counter()
    fit_eye(cfg, module, fit_on, extent_mm, epochs)
    module.eval().to(inference_device(cfg.RUNTIME))

    def displacement(coords: torch.Tensor) -> torch.Tensor:
        return module.displacement(coords)

    prediction = predict_on_grid(module.atlas, grid_coordinates(eye_axes(dense, extent_mm)), displacement,
                                 cfg.EVALUATION.CHUNK_POINTS)
    return EyeRegistration(prediction.labels, prediction.intensity, _to_mm(prediction, extent_mm),
                           time.perf_counter() - started, displacement)


def atlas_on_eye_grid(atlas: AtlasINR, eye: Eye, extent_mm: Sequence[float], chunk: int) -> GridPrediction:
    """The undeformed atlas sampled on the eye's grid (the moving image of the classical baselines)."""
    return predict_on_grid(atlas, grid_coordinates(eye_axes(eye, extent_mm)), None, chunk)


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
    return EyeRegistration(labels, result.warped_intensity, result.displacement_mm.astype(np.float32),
                           result.seconds)


def score(registration: EyeRegistration, eye: Eye, num_classes: int) -> dict[str, float]:
    """The metric row of one registration against the dense eye's labels and intensities."""
    return registration_metrics(registration.labels, eye.labels, eye.spacing, num_classes,
                                warped_intensity=registration.intensity, target_intensity=eye.oct,
                                displacement_mm=registration.displacement_mm, seconds=registration.seconds)


def score_reference(cfg: AtlasConfig, registration: EyeRegistration, eye: Eye, num_classes: int
                    ) -> dict[str, float]:
    """The paper's metric row (2-D, per B-scan, in blocks) of a registration on ``eye``'s own grid.

    Adds ``pct_negative_jacobian``: the share of voxels with ``det(I + grad u) < 0`` (the paper's
    folding; the reference code's ``det(2I + grad u)`` is a bug), NaN with a single B-scan.
    """
    ev = cfg.EVALUATION
    spacing_hw = ev.REFERENCE_SPACING_MM or eye.spacing[:2]
    row = reference_metrics(registration.labels, eye.labels, num_classes, spacing_hw, registration.intensity,
                            eye.oct, ev.REFERENCE_BLOCK_BSCANS)
    folding = float("nan")
    if min(eye.shape) >= 2:
        folding = 100.0 * negative_fraction(jacobian_determinant(registration.displacement_mm, eye.spacing))
    row["pct_negative_jacobian"] = folding
    row["time_s"] = float(registration.seconds)
    return row


def seed_fit(seed: int, eye_index: int, factor: int) -> None:
    """Seed each per-eye fit on its own, so results do not depend on the order of the runs."""
    L.seed_everything(seed * 100003 + eye_index * 101 + factor, workers=True, verbose=False)
