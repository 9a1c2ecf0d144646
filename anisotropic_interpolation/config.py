"""Config schema of the interpolation experiments (``configs/interpolation/*.yaml``).

The paper's keys and values are kept exactly (``SETTINGS``, ``PREPROCESSING``, ``TRAINING``,
``MODEL``, ``POS_ENCODING``, ``TEST``). Keys this implementation adds all have defaults, so
the reference configs load unchanged; each is documented on its field below.

What an *epoch* means here: with ``TRAINING.SAMPLING: bscan`` (the reference) one step is
one whole input B-scan of one eye and an epoch visits every (eye, B-scan) pair once in random
order. With ``patches`` (ours) an epoch is one pass over the training points on average, i.e.
``ceil(points / TRAINING.BATCH_POINTS)`` steps of random point batches drawn across all eyes
and input B-scans (``points = eyes x H x W x input B-scans``), so ``TOTAL_EPOCHS`` keeps its
meaning. ``STEPS_PER_EPOCH`` overrides the step count (the demo configs use it to train on a
fixed budget; with ``bscan`` the epoch's B-scans are then the first ones of the random order).
The same holds for ``TEST`` with ``TEST.SAMPLING`` and ``TEST.BATCH_POINTS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from retina_data.config import bounded, load_config, nested
from retina_data.errors import ConfigError
from retina_data.run_loggers import LoggerName

if TYPE_CHECKING:
    import torch

LossRecon = Literal["MSE", "SSIM", "Combi"]
LossSeg = Literal["softmax_BCE", "CE"]
SsimWindow = Literal["gaussian11_zero_padded", "gaussian7_valid"]
Sampling = Literal["bscan", "patches"]
LrSchedule = Literal["exponential", "constant", "cosine"]
CodePenalty = Literal["eye_mean_square", "all_codes_squared_norm"]
COMPILE_MIN_STEPS = 2000
CPU_MICRO_BATCH_POINTS = 8192
"""Points evaluated at once on the CPU (training micro-batches of patches, prediction chunks):
their activations stay in the cache."""
BSCAN_SINGLE_PASS_POINTS = 2**18
"""Whole-B-scan steps (``SAMPLING: bscan``) of up to this many points (a 496 x 512 B-scan) run in
one pass, as the reference's do: split into micro-batches, a loss over the whole B-scan (SSIM)
needs a second forward pass, which costs more than the cache saves (1.7x the reference step in
one pass, 0.74x in micro-batches of 8,192 points; benchmarks/results.md, section 1)."""
RESUME_FREE_KEYS = (
    "SETTINGS.PROJECT_NAME",
    "SETTINGS.RESULT_DIR",
    "SETTINGS.COMPILE",
    "SETTINGS.MICRO_BATCH_POINTS",
    "TRAINING.CHECKPOINT_EVERY",
    "EVALUATION.FIGURES",
    "EVALUATION.SAVE_NIFTI",
    "EVALUATION.MEMORY_BUDGET_MB",
    "SETTINGS.LOGGERS",
    "TRAINING.DATA_ON_DEVICE",
)
"""Keys a ``--resume`` may change: they name the run folder (PROJECT_NAME, RESULT_DIR: the folder
is given), choose how fast the same function is computed (COMPILE, MICRO_BATCH_POINTS,
MEMORY_BUDGET_MB, DATA_ON_DEVICE) or what is written besides the results (CHECKPOINT_EVERY, FIGURES,
SAVE_NIFTI, LOGGERS). Every other key determines the result, so a resume refuses a change to it
(:mod:`retina_data.run_identity`)."""


@dataclass
class Settings:
    PROJECT_NAME: str = "GenFitOCT"
    RESULT_DIR: str = ""
    """Parent of the run folder ``<RESULT_DIR>/<PROJECT_NAME>_fold<FOLD>``; empty: ``runs``."""
    IMG_DIR: str = ""
    """Fold containers (``dataset_flat_subsmpl<k>_<train|test>_fold<f>.npz``) or a retina_data tree."""
    FOLD: int = bounded(1, ge=0)
    FOLDS_FILE: str = "cross-validation-folds.yml"
    """(added) folds of a retina_data tree, relative to IMG_DIR."""
    COMPILE: bool | None = None
    """(added) ``torch.compile`` the training and fitting steps and the network of dense
    predictions; null: only optimisations of at least ``COMPILE_MIN_STEPS`` steps and
    predictions of at least 16 million points, where the one-off compilation (10-60 s on
    2 CPU cores) pays for itself."""
    MICRO_BATCH_POINTS: int | None = bounded(None, ge=1)
    """(added) points evaluated at once inside a step: a step's batch is processed in
    micro-batches of about this size with the gradients summed, which gives the same
    update as the whole batch; on the CPU, tensors that stay in the cache make a step
    several times faster. null: patch steps in micro-batches of 8192 points on the CPU, whole
    B-scans of up to ``BSCAN_SINGLE_PASS_POINTS`` in one pass, the whole batch on a GPU."""
    ENFACE_LAYOUT: Literal["auto", "NDW", "NWD"] = "auto"
    """(added) layout of the containers' ``enface_imgs``: ``NDW`` (per eye [B-scan, A-scan], what
    the reference code writes), ``NWD`` (ours and the reference README's) or ``auto`` (told apart
    by the axis of length W; a container with W == D is refused until this is stated)."""
    TREE_LAYOUT: Literal["retina_data", "reference"] = "retina_data"
    """(added) how a NIfTI tree in IMG_DIR stores its arrays: ``retina_data`` (ours: [H, W, D],
    OCT float in [0, 1]) or ``reference`` (as nibabel returns the reference tree: [W, H, D],
    OCT uint8 0..255, divided by 255 on reading)."""
    LOGGERS: list[LoggerName] = field(default_factory=lambda: ["csv"])
    """(added) loggers of the training summaries (every ``TRAINING.EPOCHS_TIL_SUMMARY`` epochs), as
    the atlas tree's ``RUNTIME.LOGGERS`` (:mod:`retina_data.run_loggers`): CSV always (the checkpoint
    folder's ``logs/version_<k>/metrics.csv``, besides its ``training_log.csv``); ``tensorboard``
    and ``wandb`` when installed (extras ``resa-oct[tensorboard]``, ``resa-oct[wandb]``; asked for
    but not installed: one notice, and the run goes on without it). Logging never changes what
    a run computes; default ``[csv]``."""


@dataclass
class Preprocessing:
    BSCAN_SUBSAMPLE_FACTOR: int = bounded(32, ge=1)
    MINMAX_NORMALISE: bool | None = None
    """(added) min-max normalise each eye's OCT and en-face image to [0, 1] on load, separately
    for the training volume, the test eye's fitting volume (its input B-scans) and its
    evaluation volume, as the reference gen-INR script does. null: as the reference scripts
    do: true for ``train_test_geninr.py``, false for ``train_test_singleinr.py`` (the reference
    single INR reads the stored values). Ours (false): the stored values, already in [0, 1],
    so a test eye's input B-scans are exactly its evaluation volume's."""
    SLICE_COORD_SCALE: float = bounded(0.1, gt=0.0)
    """(added) the input B-scans of an eye span ``[-SLICE_COORD_SCALE, SLICE_COORD_SCALE]`` on the
    slow axis (depth and fast axis span ``[-1, 1]``). Reference: 0.1 (``linspace(-1, 1, D) / 10``,
    "z-spacing roughly 10x x-spacing"); ours: 1."""


@dataclass
class LatentCode:
    SIZE: int = bounded(128, ge=0)
    INIT_STD: float = bounded(0.01, gt=0.0)
    REG_WEIGHT: float | None = bounded(None, ge=0.0)
    """(added) weight of the code penalty (training and test-time fit). Reference = null: 1, and
    no penalty with ``MODEL.MODULATION``; ours: 1e-4."""
    REG_TYPE: CodePenalty = "eye_mean_square"
    """(added) the code penalty. Reference ``eye_mean_square``: ``mean(z²)`` over the entries of
    the code of each point's eye (one B-scan per step: the current eye's code); ours
    ``all_codes_squared_norm``: ``|z|²`` averaged over the codes of all eyes being fitted."""

    def weight(self, modulation: bool) -> float:
        """The penalty weight of a network with or without FiLM ``modulation``."""
        if self.REG_WEIGHT is not None:
            return self.REG_WEIGHT
        return 0.0 if modulation else 1.0


@dataclass
class Training:
    LATENT_CODE: LatentCode = nested(LatentCode)
    NUM_SAMPLES: int = bounded(80, ge=1)
    """Number of training eyes used (the first ones of the fold)."""
    SEED: int = 25
    LEARNING_RATE: float = bounded(1e-4, gt=0.0)
    TOTAL_EPOCHS: int = bounded(1500, ge=1)
    EPOCHS_TIL_SUMMARY: int = bounded(10, ge=1)
    LOSS_RECON: LossRecon = "Combi"
    """MSE, SSIM (1 - SSIM) or Combi (MSE + SSIM_WEIGHT (1 - SSIM)), SSIM per image of the step
    (a whole B-scan with ``SAMPLING: bscan``, a patch with ``patches``)."""
    SSIM_WEIGHT: float = bounded(0.1, ge=0.0)
    """(added) weight of 1 - SSIM in Combi. Reference: 0.1; ours: 1."""
    SSIM_WINDOW: SsimWindow = "gaussian11_zero_padded"
    """(added) SSIM window (sigma 1.5, C1 = 0.01², C2 = 0.03², data range 1). Reference
    ``gaussian11_zero_padded``: 11 x 11, the image zero-padded, the map averaged over every
    pixel; ours ``gaussian7_valid``: 7 x 7 (at most the image side), valid positions only."""
    SAMPLING: Sampling = "bscan"
    """(added) what one step sees. Reference ``bscan``: one whole input B-scan of one eye, an
    epoch visits every (eye, B-scan) pair once in random order (``BATCH_POINTS`` and
    ``PATCH_SIZE`` unused; a B-scan larger than a micro-batch is processed in micro-batches
    with the loss of the whole B-scan, the same update); ours ``patches``: ``BATCH_POINTS``
    points in random patches drawn across all eyes and input B-scans."""
    LOSS_WEIGHT_RECON: float = bounded(5.0, ge=0.0)
    LOSS_WEIGHT_SEG: float = bounded(1.0, ge=0.0)
    INPUT_ENFACE: Literal["SLO", ""] | None = "SLO"
    LOSS_SEG: LossSeg = "softmax_BCE"
    """(added) segmentation loss. Reference ``softmax_BCE``: binary cross-entropy of the softmax
    probabilities against the one-hot labels, averaged over points and classes; ours ``CE``:
    cross-entropy of the logits."""
    BATCH_POINTS: int = bounded(65536, ge=1)
    """(added) points per optimisation step (rounded to whole patches and equal micro-batches)."""
    PATCH_SIZE: int | None = bounded(None, ge=1)
    """(added) points are drawn as PATCH_SIZE² patches of one B-scan; null: 16 with SSIM, else 1."""
    STEPS_PER_EPOCH: int | None = bounded(None, ge=1)
    """(added) steps per epoch; null: one pass over the training points."""
    LATENT_LEARNING_RATE: float | None = bounded(None, gt=0.0)
    """(added) learning rate of the codes; null: LEARNING_RATE."""
    LR_SCHEDULE: LrSchedule = "exponential"
    """(added) Reference ``exponential``: the rate times LR_GAMMA after every epoch; ours
    ``constant``, or ``cosine``: per step from LEARNING_RATE to LEARNING_RATE * LR_MIN_FACTOR."""
    LR_GAMMA: float = bounded(0.99, gt=0.0, le=1.0)
    """(added) decay per epoch of the ``exponential`` schedule (reference: 0.99)."""
    LR_MIN_FACTOR: float = bounded(0.1, gt=0.0, le=1.0)
    EARLY_STOPPING_PATIENCE: int = bounded(10, ge=0)
    """(added) stop once this many epochs after EARLY_STOPPING_START_EPOCH have not lowered the
    best epoch mean loss by more than EARLY_STOPPING_MIN_DELTA. Reference: 10; ours: 0 (never)."""
    EARLY_STOPPING_MIN_DELTA: float = bounded(5e-4, ge=0.0)
    """(added) improvement of the epoch mean loss that resets the patience (reference: 5e-4)."""
    EARLY_STOPPING_START_EPOCH: int = bounded(100, ge=0)
    """(added) epochs before this (0-based) never count against the patience (reference: 100)."""
    HOLDOUT_BSCANS: int = bounded(0, ge=0)
    """(added) input B-scans per eye held out of the fit (evenly spread between the first and the
    last input, which stay, so every B-scan keeps its slow-axis coordinate) and used for
    validation: their loss (weighted reconstruction + segmentation, no code penalty) is logged
    every epoch (``heldout`` in ``training_log.csv``), early stopping watches it and the kept
    epoch is the one with the lowest held-out loss. Reference: 0 (every input is fitted, the
    epoch is chosen by the training loss); ours (demo single INR): a few, so the fit stops
    before it learns the speckle of its inputs."""
    HOLDOUT_REFIT: bool = False
    """(added) with HOLDOUT_BSCANS: after the validated fit, fit again from the same initial
    weights and codes on all input B-scans for the chosen number of epochs and keep that last
    epoch. false: keep the validated fit's lowest-held-out-loss epoch."""
    CHECKPOINT_EVERY: int = bounded(50, ge=1)
    """(added) epochs between checkpoints (also written at the end and on SIGTERM/SIGINT)."""
    MIXED_PRECISION: bool = False
    """(added) bf16 autocast in training, latent fits and prediction on GPUs with native bf16
    (compute capability >= 8.0; fp32 on the CPU and, with a notice, on older GPUs). Reference:
    false, fp32 throughout; ours (fast and demo configs): true."""
    DATA_ON_DEVICE: bool = True
    """(added) where the gen-INR's training eyes are. Reference: true, every training eye's input
    B-scans held on the device for the whole run (about 16 MB per eye at 496 x 512 x 16 input
    B-scans). false: streamed from the eye store in ``SETTINGS.IMG_DIR`` (which must then be one,
    ``python -m retina_data store``): each step reads only the B-scans it uses
    (:mod:`anisotropic_interpolation.streaming`), so memory stays that of a step whatever the
    number of eyes; the same batches and the same training, slower per step by the reads."""


@dataclass
class Model:
    NUM_LAYERS: int = bounded(6, ge=1)
    HIDDEN_SIZE: int = bounded(128, ge=1)
    DROPOUT: float = bounded(0.0, ge=0.0, lt=1.0)
    NUM_CLASSES: int = bounded(13, ge=0)
    ACTIVATION: Literal["SIREN", "WIRE", "RELU", "FINER"] = "WIRE"
    MODULATION: bool = False
    SKIP_CONNECTION: bool = True
    INPUT_COORD_TO_ALL_LAYERS: bool = True
    LATENT_TO_ALL_LAYERS: bool = False
    """(added) with INPUT_COORD_TO_ALL_LAYERS, the latent code enters every layer too. Reference:
    false (the code enters the first layer only; later layers get ``[encoded coords, SLO, h]``);
    ours: true."""
    INIT: Literal["reference", "ours"] = "reference"
    """(added) initialisation of the ReLU layers and the output heads. Reference: PyTorch's
    default (``nn.Linear``); ours: ReLU layers Kaiming-uniform with zero biases, heads with the
    rule of the activation's later layers (SIREN/WIRE/FINER: ``U(+-sqrt(6/in)/omega0)``)."""
    FILM: Literal["reference", "ours"] = "reference"
    """(added) the FiLM SIREN of ``MODULATION``. Reference: the first layer unmodulated, each
    later layer ``sin(omega0 gamma (W h + b) + beta)``, every weight ``U(+-sqrt(6/max(in, out))/omega0)``
    (first layer ``U(+-1/in)``), zero biases; ours: every layer ``sin(omega0 (gamma (W h + b) + beta))``,
    SIREN-initialised layers, FiLM map at 0.1 x its default weights with ``gamma = 1, beta = 0``
    at a zero code."""

    def __post_init__(self) -> None:
        if self.LATENT_TO_ALL_LAYERS and (self.MODULATION or not self.INPUT_COORD_TO_ALL_LAYERS):
            raise ConfigError(
                "MODEL.LATENT_TO_ALL_LAYERS = true: expected INPUT_COORD_TO_ALL_LAYERS = true "
                "and MODULATION = false (the code is an input of every layer that gets the input)"
            )


@dataclass
class Hashgrid:
    DIM: int = bounded(3, ge=3, le=3)
    N_LEVELS: int = bounded(16, ge=1)
    N_FEATURES_PER_LEVEL: int = bounded(2, ge=1)
    LOG2_HASHMAP_SIZE: int = bounded(15, ge=4, le=24)
    BASE_RESOLUTION: int = bounded(16, ge=1)
    FINEST_RESOLUTION: int = bounded(512, ge=1)
    DENSE_COARSE_LEVELS: bool = False
    """(added) Reference: false, every level hashed (tiny-cuda-nn's spatial hash) into a table of
    ``min(resolution^3, 2^LOG2_HASHMAP_SIZE)`` rows; ours: true, a level whose
    ``(resolution + 1)^3`` vertices fit in ``2^LOG2_HASHMAP_SIZE`` rows is indexed densely
    (no collisions), every level has ``2^LOG2_HASHMAP_SIZE`` rows."""

    def __post_init__(self) -> None:
        if self.FINEST_RESOLUTION < self.BASE_RESOLUTION:
            raise ConfigError(
                f"POS_ENCODING.HASHGRID.FINEST_RESOLUTION = {self.FINEST_RESOLUTION} is below "
                f"BASE_RESOLUTION = {self.BASE_RESOLUTION}"
            )


@dataclass
class FourierFeatures:
    MAPPING_SIZE: int = bounded(256, ge=1)
    SCALE: float = bounded(1.0, gt=0.0)
    FACTOR: float = bounded(1.0, gt=0.0)


@dataclass
class SirenParams:
    OMEGA_0: float = bounded(30.0, gt=0.0)


@dataclass
class WireParams:
    SCALE_0: float = bounded(10.0, gt=0.0)
    OMEGA_0: float = bounded(30.0, gt=0.0)
    SHARED_LINEAR: bool = False
    """(added) Reference: false, two linear maps of the layer input, ``f = W_f x + b_f`` and
    ``s = W_s x + b_s``, output ``cos(omega0 f) exp(-(scale0 s)^2)``; ours: true, one map for both
    (``s = f``: half the parameters and the work)."""


@dataclass
class FinerParams:
    OMEGA_0: float = bounded(30.0, gt=0.0)
    SCALE_0: float = bounded(10.0, ge=0.0)
    SCALE_REQ_GRAD: bool = False


@dataclass
class PosEncoding:
    TYPE: Literal["None", "FF", "Hashgrid"] = "None"
    COORD_FACTOR: float | None = bounded(None, gt=0.0)
    """(added) factor on the coordinates with ``TYPE: 'None'``. Reference: null, pi with SIREN
    and 1 with any other activation; ours: 1."""
    HASHGRID: Hashgrid | None = None
    FF: FourierFeatures | None = None
    SIREN: SirenParams = nested(SirenParams)
    WIRE: WireParams = nested(WireParams)
    FINER: FinerParams = nested(FinerParams)

    def __post_init__(self) -> None:
        if self.TYPE == "Hashgrid" and self.HASHGRID is None:
            raise ConfigError("POS_ENCODING.TYPE = 'Hashgrid' needs a POS_ENCODING.HASHGRID block")
        if self.TYPE == "FF" and self.FF is None:
            raise ConfigError("POS_ENCODING.TYPE = 'FF' needs a POS_ENCODING.FF block")


@dataclass
class TestLatentCode:
    INIT_STD: float = bounded(1e-4, gt=0.0)


@dataclass
class Test:
    NUM_SAMPLES: int = bounded(1, ge=1)
    """Unseen eyes whose codes are fitted together in one batch."""
    LATENT_CODE: TestLatentCode = nested(TestLatentCode)
    TOTAL_EPOCHS: int = bounded(200, ge=1)
    EPOCHS_TIL_SUMMARY: int = bounded(50, ge=1)
    LEARNING_RATE: float = bounded(1e-3, gt=0.0)
    SAMPLING: Sampling = "bscan"
    """(added) Reference ``bscan``: every step one whole input B-scan of each eye being fitted
    (each eye's code follows its own fit: the per-eye losses are summed), every input B-scan
    once per epoch in random order; ours ``patches``: BATCH_POINTS points in random patches."""
    BATCH_POINTS: int = bounded(16384, ge=1)
    """(added) points per latent-fit step with ``SAMPLING: patches``."""
    STEPS_PER_EPOCH: int | None = bounded(None, ge=1)
    """(added) steps per latent-fit epoch; null: one pass over the eyes' input points."""
    CONVERGENCE_TOL: float = bounded(0.0, ge=0.0)
    """(added) stop the fit once a summary improves the loss by less than this fraction; 0: never
    (the reference)."""
    LR_SCHEDULE: LrSchedule = "exponential"
    """(added) Reference ``exponential`` (LR_GAMMA per epoch); ours ``constant``, or ``cosine``
    per step over TOTAL_EPOCHS to LEARNING_RATE * LR_MIN_FACTOR."""
    LR_GAMMA: float = bounded(0.99, gt=0.0, le=1.0)
    """(added) decay per epoch of the ``exponential`` schedule (reference: 0.99)."""
    LR_MIN_FACTOR: float = bounded(0.1, gt=0.0, le=1.0)
    KEEP: Literal["best", "last"] = "best"
    """(added) which code the fit returns. Reference ``best``: each eye's code of its
    lowest-loss epoch (with HOLDOUT_BSCANS: lowest held-out loss); ours ``last``: the code after
    the last step."""
    HOLDOUT_BSCANS: int = bounded(0, ge=0)
    """(added) input B-scans per eye held out of the latent fit (evenly spread between the first
    and the last input, which stay) and used for validation: each eye's held-out loss (weighted
    reconstruction, no code penalty) is recorded every epoch and KEEP ``best`` chooses its code
    by it. Reference: 0 (every input is fitted, the code is chosen by the fitting loss)."""
    HOLDOUT_REFIT: bool = False
    """(added) with HOLDOUT_BSCANS: fit each eye again from its same initial code on all input
    B-scans for its chosen number of epochs and return that code. false: the validated fit's code."""


@dataclass
class Evaluation:
    """(added section) what one run scores besides the INR itself."""

    SINGLE_INR_BASELINE: bool = False
    """Also fit a single-subject INR per test eye (gen-INR script) as a baseline."""
    SINGLE_INR_CONFIG: str = "singleinr_config.yaml"
    """Config of that baseline, relative to this config's folder."""
    SINGLE_INR_OVERRIDES: list[str] = field(default_factory=list)
    """``KEY.PATH=value`` overrides applied to the baseline's config."""
    CLASSICAL_BASELINES: bool = True
    """Score nearest, linear and cubic interpolation of the input B-scans."""
    SAVE_NIFTI: bool = True
    FIGURES: bool = True
    LPIPS: bool = False
    MEMORY_BUDGET_MB: int = bounded(512, ge=16)
    """Working memory of one chunk of dense prediction."""
    EXCLUDE_SUBJECTS: list[str] = field(default_factory=list)
    """(added) Subjects scored (``metrics/``, ``metrics_all.csv``) but left out of the summary tables;
    the paper's healthy tables leave out sub004 (its paper configs say so)."""
    TRUTH_CONTAINER: Literal["half", "densest"] = "half"
    """(added) With fold containers: the test container scored against. ``half``: the one at half
    BSCAN_SUBSAMPLE_FACTOR (the paper: inputs from subsmpl32, truth subsmpl16 with 31 B-scans,
    inputs 0, 2, ..., 30, gaps 1, 3, ..., 29); ``densest`` (ours): the densest test container
    whose factor divides BSCAN_SUBSAMPLE_FACTOR. A retina_data tree is always scored on its
    dense eyes (inputs every k-th B-scan, gaps the B-scans between)."""
    BORDER_SAMPLING: Literal["swapped", "correct"] = "swapped"
    """(added) Sampling of the border distances (ASSD/HD95/HD) of the paper's metric set
    (``summary_reference``): ``swapped`` as the reference passes it, (A-scan spacing, depth
    spacing) on the (depth, A-scan) axes; ``correct`` (ours): (depth spacing, A-scan spacing)."""


@dataclass
class ExperimentConfig:
    SETTINGS: Settings = nested(Settings)
    PREPROCESSING: Preprocessing = nested(Preprocessing)
    TRAINING: Training = nested(Training)
    MODEL: Model = nested(Model)
    POS_ENCODING: PosEncoding = nested(PosEncoding)
    TEST: Test = nested(Test)
    EVALUATION: Evaluation = nested(Evaluation)

    def __post_init__(self) -> None:
        model = self.MODEL
        if model.MODULATION:
            problems = []
            if model.ACTIVATION != "SIREN":
                problems.append(f"MODEL.ACTIVATION = {model.ACTIVATION!r} (needs 'SIREN')")
            if model.SKIP_CONNECTION:
                problems.append("MODEL.SKIP_CONNECTION = true (needs the plain MLP)")
            if self.TRAINING.LATENT_CODE.SIZE == 0:
                problems.append("TRAINING.LATENT_CODE.SIZE = 0 (needs a latent code)")
            if problems:
                raise ConfigError(
                    "MODEL.MODULATION = true (FiLM-modulated SIREN) conflicts with " + "; ".join(problems)
                )
        patch = self.TRAINING.PATCH_SIZE
        if self.TRAINING.LOSS_RECON != "MSE" and patch is not None and patch < 3:
            raise ConfigError(
                f"TRAINING.PATCH_SIZE = {patch}: LOSS_RECON = {self.TRAINING.LOSS_RECON!r} compares "
                "image patches; expected at least 3"
            )

    @property
    def uses_slo(self) -> bool:
        return self.TRAINING.INPUT_ENFACE == "SLO"

    def compile_for(self, steps: int) -> bool:
        """Whether an optimisation of ``steps`` steps compiles its loss (``SETTINGS.COMPILE``)."""
        if self.SETTINGS.COMPILE is None:
            return steps >= COMPILE_MIN_STEPS
        return self.SETTINGS.COMPILE

    def micro_batch_points(self, device: torch.device, sampling: str = "patches") -> int | None:
        """Points per micro-batch on ``device`` for steps of ``sampling`` (``None``: the whole batch at once)."""
        if self.SETTINGS.MICRO_BATCH_POINTS is not None:
            return self.SETTINGS.MICRO_BATCH_POINTS
        if sampling == "bscan":
            return BSCAN_SINGLE_PASS_POINTS
        return CPU_MICRO_BATCH_POINTS if device.type == "cpu" else None

    @property
    def patch_size(self) -> int:
        """Side of the square B-scan patches points are drawn in."""
        if self.TRAINING.PATCH_SIZE is not None:
            return self.TRAINING.PATCH_SIZE
        return 1 if self.TRAINING.LOSS_RECON == "MSE" else 16


def load_experiment_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read and validate an interpolation config; ``overrides`` are ``KEY.PATH=value`` strings."""
    return load_config(path, ExperimentConfig, overrides)
