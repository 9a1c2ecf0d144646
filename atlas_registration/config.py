"""The config schema of the atlas tree: the paper's keys (``fit_GINR_Atlas_base.yml``) plus ours.

The sections and keys the paper's configuration uses (``SETTINGS``, ``TRAINING``,
``TEST``, ``DISP_MODEL``, ``ATLAS_MODEL``, ``DATA``) keep their names and meaning. Keys we
add have defaults, so the paper's file loads unchanged. Every key is checked on load
(:func:`load_atlas_config`): unknown keys get a "did you mean", values outside their
bounds name the key and the allowed range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retina_data.config import bounded, load_config, nested
from retina_data.errors import ConfigError

_AT_LEAST_ONE = {"bounds": {"ge": 1}}
"""Field metadata: every item of a list must be >= 1 (checked on load)."""


@dataclass
class Settings:
    """Where data and results live and which cross-validation fold is run."""

    PROJECT_NAME: str = "GINR_Atlas_base"
    RESULT_DIR: str = ""
    """Results go to ``RESULT_DIR/<PROJECT_NAME>_fold<FOLD>`` (``--output`` overrides it)."""
    DATA_DIR: str = ""
    """The retina_data NIfTI tree (``<subject>/<OD|OS>/oct_flat_<od|os>.nii.gz``)."""
    FOLD: int = bounded(2, ge=0)
    FOLD_FILE: str = "configs/atlas/cross-validation-folds.yml"
    """Fold file ``FOLD: {k: {TRAIN: [...], TEST: [...]}}`` (relative paths, like DATA_DIR,
    from the working folder: the repository root)."""
    SEED: int = bounded(0, ge=0)


@dataclass
class LatentCode:
    SIZE: int = bounded(128, ge=1)
    INIT_STD: float = bounded(0.01, gt=0)


@dataclass
class Training:
    """Joint training of the deformation network, the latent codes and the atlas."""

    LATENT_CODE: LatentCode = nested(LatentCode)
    LEARNING_RATE: float = bounded(1e-5, gt=0)
    LR_SCHEDULER_GAMMA: float = bounded(0.999, gt=0, le=1)
    TOTAL_EPOCHS: int = bounded(2000, ge=1)
    BATCH_SIZE: int = bounded(1, ge=1)
    PATCHES_PER_EYE: int = bounded(1, ge=1)
    """Random patches drawn from each training eye per epoch."""
    LATENT_LR_FACTOR: float = bounded(1.0, gt=0)
    """The latent codes train at ``LEARNING_RATE * LATENT_LR_FACTOR`` (each sees 1/N of the steps)."""
    ATLAS_LR_FACTOR: float = bounded(0.1, ge=0)
    """The atlas is fine-tuned jointly at ``LEARNING_RATE * ATLAS_LR_FACTOR`` (0 freezes it)."""
    MSE_WEIGHT: float = bounded(1.0, ge=0)
    SEG_WEIGHT: float = bounded(0.1, ge=0)
    """Weight of the label cross-entropy between the deformed atlas and the eye's labels."""
    REG_WEIGHT: float = bounded(0.01, ge=0)
    REG_TYPE: Literal["jacobian", "gradient"] = "jacobian"
    """``jacobian``: mean ``|1 - det(I + grad u)|`` (IDIR); ``gradient``: mean ``|grad u|^2``."""
    REG_POINTS: int = bounded(2048, ge=1)
    """Random points per patch at which the regulariser is computed with autograd."""
    LATENT_WEIGHT: float = bounded(1e-4, ge=0)
    """Weight of the ``|z|^2`` prior on the latent codes (auto-decoder)."""
    CHECKPOINT_EVERY: int = bounded(50, ge=1)
    """Epochs between checkpoints (``last.ckpt`` is always kept)."""
    VAL_EVERY: int = bounded(50, ge=1)
    """Epochs between validations on full training eyes."""
    VAL_EYES: int = bounded(2, ge=0)
    """Training eyes registered in full at each validation (Dice of the warped atlas labels)."""


@dataclass
class Test:
    """Test-time fit of an unseen eye: the networks frozen, only its latent code optimised."""

    LEARNING_RATE: float = bounded(3e-5, gt=0)
    LR_SCHEDULER_GAMMA: float = bounded(0.999, gt=0, le=1)
    TOTAL_EPOCHS: int = bounded(100, ge=1)
    BATCH_SIZE: int = bounded(1, ge=1)
    STEPS_PER_EPOCH: int = bounded(1, ge=1)
    """Random patches of the eye per epoch."""
    SSIM_WEIGHT: float = bounded(0.0, ge=0)
    REG_WEIGHT: float = bounded(0.01, ge=0)


@dataclass
class DispModel:
    """FiLM-modulated SIREN ``u(x; z)`` giving the displacement (normalised coordinates)."""

    NUM_LAYERS: int = bounded(4, ge=1)
    HIDDEN_SIZE: int = bounded(128, ge=1)
    IN_SIZE: int = bounded(3, ge=3, le=3)
    OUT_SIZE: int = bounded(3, ge=3, le=3)
    OMEGA: float = bounded(30.0, gt=0)
    OUT_INIT_SCALE: float = bounded(1e-3, ge=0)
    """The last layer's weights start this small, so training starts near the identity."""


@dataclass
class AtlasModel:
    """SIREN atlas over (x, y, z) with an intensity head and a label head."""

    HIDDEN_SIZE: int = bounded(256, ge=1)
    IN_SIZE: int = bounded(3, ge=3, le=3)
    OUT_SIZE: int = bounded(3, ge=1)
    """Paper key, kept for compatibility; the heads' sizes are 1 (intensity) and the number
    of atlas classes (``LABELS``), so this value is not used."""
    OMEGA: float = bounded(30.0, gt=0)
    PATH: str = ""
    """A pretrained atlas (``atlas.ckpt`` from ``pretrain_atlas.py``); empty: pretrain it in the run."""
    NUM_LAYERS: int = bounded(5, ge=1)


@dataclass
class AtlasPretraining:
    """Fitting the atlas INR to the median atlas before registration."""

    TOTAL_EPOCHS: int = bounded(200, ge=1)
    STEPS_PER_EPOCH: int = bounded(10, ge=1)
    POINTS_PER_STEP: int = bounded(65536, ge=1)
    LEARNING_RATE: float = bounded(1e-4, gt=0)
    SEG_WEIGHT: float = bounded(0.1, ge=0)


@dataclass
class Data:
    """How training patches are cut from the eyes."""

    SAMPLE_MODE: Literal["downsample", "crop"] = "downsample"
    """``downsample``: a patch of PATCH_SIZE voxels every SUBSMPL_FACTOR-th voxel (per axis the
    stride is reduced where the patch would not fit) at a random offset; ``crop``: stride 1."""
    SUBSMPL_FACTOR: int = bounded(8, ge=1)
    PATCH_SIZE: list[int] = field(default_factory=lambda: [231, 62, 64], metadata=_AT_LEAST_ONE)
    EXTENT_MM: list[float] | None = None
    """Physical extent (dH, dW, dD) mm mapped onto [-1, 1]; ``null``: that of the first training
    eye's grid. Fixed for a run, so a sparse eye is placed by its true B-scan positions."""
    FLIP_OS: bool = True
    """Mirror left eyes (W axis) into right-eye orientation before registration."""

    def __post_init__(self) -> None:
        if len(self.PATCH_SIZE) != 3:
            raise ConfigError(f"DATA.PATCH_SIZE must have 3 values (H, W, D), got {self.PATCH_SIZE}")
        if self.EXTENT_MM is not None and (len(self.EXTENT_MM) != 3 or min(self.EXTENT_MM) <= 0):
            raise ConfigError(f"DATA.EXTENT_MM must be 3 positive lengths in mm, got {self.EXTENT_MM}")


@dataclass
class Labels:
    """Which source labels merge into which atlas class (see ``utilities/label_mapping.py``)."""

    MAPPING: dict[int, int] | None = None
    """``{source: target}`` for every label 0..13; ``null``: the paper's 10 classes."""
    NAMES: list[str] | None = None


@dataclass
class Evaluation:
    """Unseen-eye inference, baselines, the resolution experiment and outputs."""

    RESOLUTION_FACTORS: list[int] = field(default_factory=lambda: [1, 8, 16, 32], metadata=_AT_LEAST_ONE)
    """The unseen eyes are registered from every k-th B-scan and scored on all B-scans."""
    BASELINES: list[Literal["atlas", "affine", "idir", "bspline", "demons"]] = field(
        default_factory=lambda: ["atlas", "affine", "idir", "bspline"])
    IDIR_EPOCHS: int = bounded(100, ge=1)
    IDIR_LEARNING_RATE: float = bounded(1e-4, gt=0)
    IDIR_HIDDEN_SIZE: int = bounded(128, ge=1)
    IDIR_NUM_LAYERS: int = bounded(3, ge=1)
    CLASSICAL_ITERATIONS: int | None = None
    """Optimiser iterations per pyramid level of the SimpleITK baselines (``null``: their defaults)."""
    CLASSICAL_SAMPLING: float = bounded(0.2, gt=0, le=1)
    """Fraction of voxels the SimpleITK metric samples per evaluation."""
    MAX_TEST_EYES: int | None = None
    """Score only the first N test eyes (``null``: all)."""
    ATLAS_SHAPES: list[list[int]] = field(default_factory=lambda: [])
    """Extra grids ``[H, W, D]`` at which the atlas INR is written (the training grid always is)."""
    CHUNK_POINTS: int = bounded(262144, ge=1)
    """Points per forward pass in dense prediction (bounds memory)."""
    FIGURES: bool = True


@dataclass
class Runtime:
    """Devices, logging and checkpoints; the command line overrides these."""

    ACCELERATOR: str = "auto"
    """Lightning accelerator: ``auto``, ``cpu``, ``gpu``, ``mps``."""
    DEVICES: Any = "auto"
    """Lightning devices: ``auto``, a count, or a list of GPU indices; >1 GPU runs DDP."""
    PRECISION: str | None = None
    """Lightning precision; ``null``: ``bf16-mixed`` on GPUs with native bf16 (compute capability >= 8.0),
    ``32-true`` elsewhere."""
    LOGGERS: list[Literal["csv", "tensorboard", "wandb"]] = field(default_factory=lambda: ["csv", "tensorboard"])
    """``tensorboard`` is skipped when not installed; ``wandb`` needs the package (honours WANDB_MODE)."""
    DETERMINISTIC: bool = False
    NUM_WORKERS: int = bounded(0, ge=0)
    PROGRESS_BAR: bool = True


@dataclass
class AtlasConfig:
    """The whole configuration (``configs/atlas/fit_GINR_Atlas_base.yml``)."""

    SETTINGS: Settings = nested(Settings)
    TRAINING: Training = nested(Training)
    TEST: Test = nested(Test)
    DISP_MODEL: DispModel = nested(DispModel)
    ATLAS_MODEL: AtlasModel = nested(AtlasModel)
    ATLAS_PRETRAINING: AtlasPretraining = nested(AtlasPretraining)
    DATA: Data = nested(Data)
    LABELS: Labels = nested(Labels)
    EVALUATION: Evaluation = nested(Evaluation)
    RUNTIME: Runtime = nested(Runtime)


def load_atlas_config(path: str | Path, overrides: list[str] | None = None) -> AtlasConfig:
    """Load and validate a config file, with ``SECTION.KEY=value`` overrides applied first."""
    return load_config(path, AtlasConfig, overrides)
