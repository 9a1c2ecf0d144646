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
from retina_data.run_loggers import LoggerName

_AT_LEAST_ONE = {"bounds": {"ge": 1}}
"""Field metadata: every item of a list must be >= 1 (checked on load)."""

PrecisionName = Literal[
    "32-true",
    "bf16-mixed",
    "16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
    "32",
    "16",
    "bf16",
    "64",
]
"""Every precision name Lightning's ``Trainer(precision=...)`` takes (the last four its older spellings)."""


@dataclass
class Settings:
    """Where data and results live and which cross-validation fold is run."""

    PROJECT_NAME: str = "GINR_Atlas_base"
    RESULT_DIR: str = ""
    """Results go to ``RESULT_DIR/<PROJECT_NAME>_fold<FOLD>`` (``--output`` overrides it)."""
    DATA_DIR: str = ""
    """The retina_data NIfTI tree (``<subject>/<OD|OS>/oct_flat_<od|os>.nii.gz``), or an eye store
    (``.zarr``, a path or fsspec URL; ``python -m retina_data store``) whose training eyes are read
    per patch, so memory does not grow with their number; SUBSMPL_FACTOR k then trains on every
    k-th stored B-scan."""
    FOLD: int = bounded(2, ge=0)
    FOLD_FILE: str = "configs/atlas/cross-validation-folds.yml"
    """Fold file ``FOLD: {k: {TRAIN: [...], TEST: [...]}}`` (relative paths, like DATA_DIR,
    from the working folder: the repository root)."""
    SEED: int = bounded(0, ge=0)


@dataclass
class LatentCode:
    SIZE: int = bounded(128, ge=1)
    INIT_STD: float = bounded(0.01, gt=0)
    INIT: Literal["shifted", "centred"] = "shifted"
    """(added) How every eye's code starts (training and unseen eyes). ``shifted`` (the reference): the
    first half N(1, INIT_STD), the second half N(0, INIT_STD); ``centred`` (ours): N(0, INIT_STD)."""


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
    SHUFFLE: bool = False
    """(added) ``false`` (the reference): the eyes' patches come in file order, every epoch alike;
    ``true`` (ours): in a fresh random order each epoch."""
    LATENT_LR_FACTOR: float = bounded(1.0, gt=0)
    """The latent codes train at ``LEARNING_RATE * LATENT_LR_FACTOR`` (each sees 1/N of the steps)."""
    ATLAS_LR_FACTOR: float = bounded(0.1, ge=0)
    """The atlas is fine-tuned jointly at ``LEARNING_RATE * ATLAS_LR_FACTOR`` (0 freezes it)."""
    MSE_WEIGHT: float = bounded(1.0, ge=0)
    SEG_WEIGHT: float = bounded(1.0, ge=0)
    """Weight of the label term between the deformed atlas and the eye's labels (reference: 1;
    ours 0.1 with ``SEG_LOSS: ce``)."""
    SEG_LOSS: Literal["bce", "ce"] = "bce"
    """(added) The label term, here and in the atlas pretraining. ``bce`` (the reference): binary
    cross-entropy of the softmax against the one-hot labels, averaged over points and classes;
    ``ce`` (ours): the categorical cross-entropy of the logits."""
    REG_WEIGHT: float = bounded(0.01, ge=0)
    REG_TYPE: Literal["l1", "jacobian", "gradient"] = "l1"
    """(added) The displacement regulariser, also of the unseen-eye fits. ``l1`` (the reference): mean
    ``|u|`` over the patch's points and components (towards no displacement); ``jacobian`` (ours):
    mean ``|1 - det(I + grad u)|`` (IDIR); ``gradient``: mean ``|grad u|^2``."""
    REG_POINTS: int = bounded(2048, ge=1)
    """Random points per patch at which ``jacobian`` / ``gradient`` are computed with autograd."""
    LATENT_WEIGHT: float = bounded(0.0, ge=0)
    """(added) Weight of a ``|z|^2`` prior on the latent codes: 0 in the reference, ours 1e-4
    (auto-decoder)."""
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
    FILM: Literal["reference", "pigan"] = "reference"
    """(added) The modulated SIREN. ``reference``: the first layer ``sin(OMEGA (W x + b))`` unmodulated,
    later layers ``sin(OMEGA gamma (W h + b) + beta)`` with ``[gamma, beta] = Linear(z)`` per layer,
    every weight but the first layer's U(-SIREN_INIT, SIREN_INIT), zero biases, and the output
    ``sin(OMEGA Linear(h))`` (each component in [-1, 1]); ``pigan`` (ours): every layer
    ``sin(OMEGA ((W h + b)(1 + gamma) + beta))``, SIREN initialisation, a linear output whose
    weights start OUT_INIT_SCALE times PyTorch's."""
    SIREN_INIT: float = bounded(1e-3, gt=0)
    """(added) ``FILM: reference``: the bound of the non-first weights (the reference's ``siren_init``)."""
    SKIP_LAST_LAYER: bool = True
    """(added) ``true`` (the reference): of the NUM_LAYERS sine layers the last is built but never
    used (NUM_LAYERS: 4 computes three); ``false`` (ours): all NUM_LAYERS are used."""
    OUT_INIT_SCALE: float = bounded(1e-3, ge=0)
    """``FILM: pigan``: the linear output's weights start this small, so training starts near the identity."""


@dataclass
class AtlasModel:
    """SIREN atlas over (x, y, z) with an intensity head and a label head."""

    HIDDEN_SIZE: int = bounded(256, ge=1)
    IN_SIZE: int = bounded(3, ge=3, le=3)
    OUT_SIZE: int = bounded(3, ge=1)
    """Paper key, kept for compatibility; the heads' sizes are 1 (intensity) and the number
    of atlas classes (``LABELS``), so this value is not used."""
    OMEGA: float = bounded(30.0, gt=0)
    """Sine frequency (the reference does not read this key and uses 30)."""
    PATH: str = ""
    """A pretrained atlas (``atlas.ckpt`` from ``pretrain_atlas.py``); empty: pretrain it in the run."""
    NUM_LAYERS: int = bounded(3, ge=1)
    """(added) Sine layers of the trunk: 3 in the reference, ours 5."""
    LINEAR_LAST: bool = True
    """(added) ``true`` (the reference): the trunk ends in a linear ``HIDDEN_SIZE -> HIDDEN_SIZE`` layer
    (SIREN initialisation) before the heads; ``false`` (ours): the heads read the last sine layer."""
    INTENSITY_SIGMOID: bool = True
    """(added) ``true`` (the reference): the intensity head is ``sigmoid(Linear(h))``, in (0, 1);
    ``false`` (ours): a plain ``Linear(h)``. (The label head's softmax is part of ``SEG_LOSS``.)"""


@dataclass
class AtlasPretraining:
    """Fitting the atlas INR to the median atlas before registration."""

    TOTAL_EPOCHS: int = bounded(500, ge=1)
    STEPS_PER_EPOCH: int = bounded(10, ge=1)
    """Steps per epoch, each on POINTS_PER_STEP random voxels of the median atlas (the reference's
    script draws patches with settings that do not run; see REFERENCE.md)."""
    POINTS_PER_STEP: int = bounded(65536, ge=1)
    LEARNING_RATE: float = bounded(1e-4, gt=0)
    LR_SCHEDULER_GAMMA: float = bounded(0.99, gt=0, le=1)
    """(added) Exponential decay of the learning rate per epoch: 0.99 in the reference, 1 (none) before."""
    SEG_WEIGHT: float = bounded(1.0, ge=0)
    """Weight of the label term (``TRAINING.SEG_LOSS``): 1 in the reference, ours 0.1."""


@dataclass
class Data:
    """Which files are read, how eyes are held, and how training patches are cut from them."""

    SAMPLE_MODE: Literal["downsample", "crop"] = "downsample"
    """``downsample`` (the reference): per axis of n voxels and patch size p, every (n // p)-th voxel
    from a random phase in [0, n // p); ``crop``: a contiguous PATCH_SIZE block at a random offset."""
    SUBSMPL_FACTOR: int = bounded(8, ge=1)
    """Training, the median atlas and the unseen eyes' fits read the files
    ``oct_flat_subsmpl<k>_<od|os>`` (and ``oct_seg_flat_subsmpl<k>_...``) with k = this; 1 reads
    ``oct_flat_<od|os>``. Write them with ``python -m retina_data subsample DATA k``."""
    PATCH_SIZE: list[int] = field(default_factory=lambda: [231, 62, 64], metadata=_AT_LEAST_ONE)
    EXTENT_MM: list[float] | None = None
    """Physical extent (dH, dW, dD) mm mapped onto [-1, 1]; ``null``: that of the first training
    eye's grid. Fixed for a run, so a sparse eye is placed by its true B-scan positions."""
    FLIP_OS: bool = False
    """(added) ``false`` (the reference): eyes as stored; ``true`` (ours): left eyes mirrored along W
    into right-eye orientation before the atlas and registration."""
    CACHE_DIR: str = ""
    """(added) ``""``: the prepared eyes are held in memory; a folder: each is written there once as
    ``.npy`` and memory-mapped (for many or full-resolution eyes; the files are rewritten each run).
    Only for a tree: an eye store is read lazily."""

    def __post_init__(self) -> None:
        if len(self.PATCH_SIZE) != 3:
            raise ConfigError(f"DATA.PATCH_SIZE must have 3 values (H, W, D), got {self.PATCH_SIZE}")
        if self.EXTENT_MM is not None and (len(self.EXTENT_MM) != 3 or min(self.EXTENT_MM) <= 0):
            raise ConfigError(f"DATA.EXTENT_MM must be 3 positive lengths in mm, got {self.EXTENT_MM}")


@dataclass
class Labels:
    """Which source labels merge into which atlas class (see ``datasets/label_mapping.py``)."""

    MAPPING: dict[int, int] | None = None
    """``{source: target}`` for every label 0..13; ``null``: the paper's 10 classes."""
    NAMES: list[str] | None = None


@dataclass
class Evaluation:
    """Unseen-eye inference, baselines, the resolution experiment and outputs."""

    RESOLUTION_FACTORS: list[int] = field(default_factory=lambda: [1, 8, 16, 32], metadata=_AT_LEAST_ONE)
    """The resolution experiment: each eye is fitted on every k-th B-scan. Our protocol scores the
    fit on every B-scan of the dense eye (``summary.md``); the paper's scores it on the k-th
    B-scans it was fitted on (``summary_reference.md``)."""
    RESOLUTION_SUBJECTS: int = bounded(2, ge=1)
    """(added) The paper's resolution experiment runs on the last N test subjects of the fold
    (reference: the last 2, i.e. 4 eyes; ours scores the first ``MAX_TEST_EYES`` test eyes)."""
    BASELINES: list[Literal["atlas", "reference_affine", "reference_inr", "affine", "idir", "bspline", "demons"]] = (
        field(default_factory=lambda: ["atlas", "reference_affine", "reference_inr", "affine", "idir", "bspline"])
    )
    """``atlas``: the atlas unregistered; ``reference_affine``, ``reference_inr``: the reference's
    affine-on-coordinates fit and per-eye SIREN (``baselines/inr_fits.py``; the INR to the
    pretrained atlas); ``affine``, ``bspline``, ``demons``: SimpleITK; ``idir``: our IDIR-style fit."""
    REFERENCE_BASELINE_EPOCHS: int = bounded(100, ge=1)
    """(added) Epochs (of ``TEST.STEPS_PER_EPOCH`` patches) of the reference's affine and per-eye INR
    fits (reference: 100)."""
    REFERENCE_BASELINE_LEARNING_RATE: float = bounded(3e-5, gt=0)
    """(added) Adam learning rate of the reference's affine and per-eye INR fits (reference: 3e-5)."""
    REFERENCE_SPACING_MM: list[float] | None = field(default_factory=lambda: [6.0 / 496.0, 6.0 / 512.0])
    """(added) In-plane spacing (dH, dW) mm of the paper protocol's surface distance; the reference
    passes (6/496, 6/512) whatever the eye; ``null``: the eye's own spacing."""
    REFERENCE_BLOCK_BSCANS: int = bounded(8, ge=1)
    """(added) The paper protocol averages its per-B-scan metrics within blocks of this many
    consecutive B-scans, then over the blocks (reference: 8)."""
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
    ATLAS_SHAPES: list[list[int]] = field(default_factory=list)
    """Extra grids ``[H, W, D]`` at which the atlas INR is written (the training grid always is)."""
    CHUNK_POINTS: int = bounded(262144, ge=1)
    """Points per forward pass in dense prediction (bounds memory)."""
    FIGURES: bool = True

    def __post_init__(self) -> None:
        spacing = self.REFERENCE_SPACING_MM
        if spacing is not None and (len(spacing) != 2 or min(spacing) <= 0):
            raise ConfigError(
                f"EVALUATION.REFERENCE_SPACING_MM: expected 2 positive lengths (dH, dW) in mm or null, got {spacing}"
            )
        for shape in self.ATLAS_SHAPES:
            if len(shape) != 3 or min(shape) < 1:
                raise ConfigError(f"EVALUATION.ATLAS_SHAPES: expected grids of 3 positive sizes [H, W, D], got {shape}")


@dataclass
class Runtime:
    """Devices, logging and checkpoints; the command line overrides these."""

    ACCELERATOR: str = "auto"
    """Lightning accelerator: ``auto``, ``cpu``, ``gpu``, ``mps``."""
    DEVICES: Any = "auto"
    """Lightning devices: ``auto``, a count, or a list of GPU indices; >1 GPU runs DDP."""
    PRECISION: PrecisionName | None = "32-true"
    """Lightning precision: ``32-true`` as the reference (with ``MATMUL_PRECISION: medium``);
    ``null`` (ours: fast and demo configs): ``bf16-mixed`` on GPUs with native bf16 (compute
    capability >= 8.0), ``32-true`` elsewhere."""
    LOGGERS: list[LoggerName] = field(default_factory=lambda: ["csv", "tensorboard"])
    """Loggers of the training stages (:mod:`retina_data.run_loggers`, as the interpolation tree's
    ``SETTINGS.LOGGERS``): CSV always (``logs/<stage>/version_<k>/metrics.csv``); ``tensorboard`` and
    ``wandb`` when installed (extras ``resa-oct[tensorboard]``, ``resa-oct[wandb]``; asked for but not
    installed: one notice, and the run goes on without it). The reference logs to wandb."""
    DETERMINISTIC: bool = False
    MATMUL_PRECISION: Literal["highest", "high", "medium"] = "medium"
    """(added) ``torch.set_float32_matmul_precision`` for the run: ``medium`` as the reference (on
    GPUs with TF32/bf16 matmul units fp32 products may use them; no effect on the CPU)."""
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


RESUME_FREE_KEYS = (
    "SETTINGS.PROJECT_NAME",
    "SETTINGS.RESULT_DIR",
    "TRAINING.CHECKPOINT_EVERY",
    "DATA.CACHE_DIR",
    "EVALUATION.FIGURES",
    "EVALUATION.CHUNK_POINTS",
    "RUNTIME.ACCELERATOR",
    "RUNTIME.DEVICES",
    "RUNTIME.LOGGERS",
    "RUNTIME.NUM_WORKERS",
    "RUNTIME.PROGRESS_BAR",
    "RUNTIME.DETERMINISTIC",
)
"""Keys a ``--resume`` may change: they name the run folder (PROJECT_NAME, RESULT_DIR: the folder
is given), say where and how fast the same function is computed (CACHE_DIR, CHUNK_POINTS, the
devices, workers, deterministic kernels; as the interpolation tree's ``--gpu`` and
``--deterministic``) or what is written besides the results (CHECKPOINT_EVERY, FIGURES, loggers,
progress bar). Every other key determines the result, so a resume refuses a change to it
(:mod:`retina_data.run_identity`)."""


def load_atlas_config(path: str | Path, overrides: list[str] | None = None) -> AtlasConfig:
    """Load and validate a config file, with ``SECTION.KEY=value`` overrides applied first."""
    return load_config(path, AtlasConfig, overrides)
