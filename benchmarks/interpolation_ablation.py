"""Ablation of the gen-INR: the paper mode, each of our improvements switched on alone, and all together.

The improvements are the keys whose values differ between the paper config
(``configs/interpolation/geninr_config.yaml``) and the fast config (``geninr_fast.yaml``),
read from the two files (so the ablation follows them), grouped where keys only make sense
together (:data:`GROUPS`). Keys that cannot change anything in this experiment are listed
in :data:`NO_EFFECT` with the reason, and not run.

Every variant runs a fold as ``pipeline.run_geninr`` does (population training, test-time
latent fit, prediction at the truth's B-scans, both metric sets), through the same library
functions, on phantom eyes: a population of ``train_subjects`` subjects (both eyes), and the
eyes of ``test_subjects`` further subjects it never saw, each given every ``factor``-th
B-scan of a 31-B-scan volume (the paper's protocol: inputs 0, 2, ..., 30, gaps 1, 3, ..., 29).

Scaled down from the paper (:class:`Scale`) so that the section runs in a few minutes on 2
quiet CPU cores (about 20 minutes on the shared 2-core machine under a load of 5-7); the
network and every method setting are the paper's:

- B-scans of ``shape[:2]`` pixels instead of 230 x 496 and ``train_subjects`` subjects
  instead of 80 eyes;
- ``TRAINING.TOTAL_EPOCHS`` = ``train_epochs`` (paper 1500);
- the reference test fit (``TEST.SAMPLING: bscan``) runs ``test_epochs`` epochs (paper 200);
  our fixed-step fit keeps its 100 steps;
- points per step of the patch modes (``TRAINING.BATCH_POINTS``, ``TEST.BATCH_POINTS``)
  scaled by the B-scan's pixels (at least one patch), so a patch step keeps its size
  relative to a whole B-scan, and the number of steps per epoch its ratio to the
  reference's one-B-scan steps;
- ``SETTINGS.COMPILE`` false (the same function; a compilation per variant would cost
  more than it saves at these sizes).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anisotropic_interpolation.config import ExperimentConfig, load_experiment_config
from anisotropic_interpolation.evaluation import input_mask_from_positions, score_eye, score_eye_reference
from anisotropic_interpolation.pipeline import (
    GEN_INR,
    Experiment,
    FoldData,
    minmax_normalise_for,
    predict_gen_inr,
    seed_everything,
    train_population,
)
from benchmarks import ablation_keys
from benchmarks.interpolation_throughput import FAST_CONFIG, PAPER_CONFIG
from retina_data.config import from_dict, to_dict
from retina_data.eye import Eye
from retina_data.phantom import PhantomConfig, make_eye
from retina_data.preprocessing import minmax_normalise_eye

CPU = torch.device("cpu")
PAPER_BSCAN_PIXELS = 230 * 496
"""Pixels of one B-scan of the paper's data (230 x 496)."""
SCRIPT = "train_test_geninr"

GROUPS: dict[str, tuple[str, ...]] = {
    "latent penalty 1e-4 x squared norm, over all codes": (
        "TRAINING.LATENT_CODE.REG_WEIGHT",
        "TRAINING.LATENT_CODE.REG_TYPE",
    ),
    "short cosine test fit (100 patch steps, lr 0.01, last code)": ("TEST.*",),
}
"""Improvements of several keys that only make sense together (``SECTION.*``: every differing key there)."""

NO_EFFECT: dict[str, str] = {
    "PREPROCESSING.MINMAX_NORMALISE": "phantom eyes (and their input B-scans) span [0, 1] already: per-eye min-max "
    "normalisation leaves them unchanged",
    "TRAINING.EARLY_STOPPING_PATIENCE": "early stopping starts at epoch 100 (EARLY_STOPPING_START_EPOCH), after the "
    "scaled-down training has ended: it cannot fire here",
    "TRAINING.MIXED_PRECISION": "bf16 autocast only on GPUs with native bf16; this runs on the CPU, in fp32",
    "MODEL.FILM": "only used with MODEL.MODULATION (a FiLM SIREN); the paper network is a WIRE MLP",
    "POS_ENCODING.COORD_FACTOR": "reference null means pi for SIREN and 1 otherwise; with WIRE both are 1",
    "POS_ENCODING.HASHGRID.DENSE_COARSE_LEVELS": "only used with POS_ENCODING.TYPE 'Hashgrid'; the paper network "
    "has no encoding",
    "EVALUATION.TRUTH_CONTAINER": "chooses among reference containers; eyes given directly are scored against "
    "their dense volume",
    "EVALUATION.BORDER_SAMPLING": "changes only the border distances (ASSD/HD), not the PSNR and Dice reported",
}
"""Differing keys that cannot change this experiment's numbers, with the reason."""


@dataclass(frozen=True)
class Scale:
    """How far the experiment is scaled down from the paper (see the module docstring)."""

    shape: tuple[int, int, int] = (48, 32, 31)
    factor: int = 2
    train_subjects: int = 3
    test_subjects: int = 1
    train_epochs: int = 2
    test_epochs: int = 5

    @property
    def pixel_ratio(self) -> float:
        return self.shape[0] * self.shape[1] / PAPER_BSCAN_PIXELS

    def describe(self) -> str:
        height, width, depth = self.shape
        inputs = len(range(0, depth, self.factor))
        return (
            f"phantom B-scans of {height} x {width} (paper 230 x 496), {depth} per eye, one in {self.factor} "
            f"input ({inputs} inputs, {depth - inputs} gaps scored); population {2 * self.train_subjects} eyes of "
            f"{self.train_subjects} subjects (paper 80 eyes), {2 * self.test_subjects} held-out eyes of "
            f"{self.test_subjects} other subject(s); TRAINING.TOTAL_EPOCHS {self.train_epochs} (paper 1500); "
            f"the reference test fit {self.test_epochs} epochs (paper 200), our fit its 100 steps; patch-mode "
            f"BATCH_POINTS x {self.pixel_ratio:.4f} (the B-scan's pixels relative to the paper's); no "
            "torch.compile"
        )


def differing_keys(paper: Path = PAPER_CONFIG, fast: Path = FAST_CONFIG) -> dict[str, Any]:
    """Dotted key -> fast value, for every key whose resolved value differs between the two configs."""
    return ablation_keys.differing_keys(load_experiment_config(paper), load_experiment_config(fast))


def improvements(paper: Path = PAPER_CONFIG, fast: Path = FAST_CONFIG) -> dict[str, dict[str, Any]]:
    """Improvement name -> {dotted key: fast value}: the groups, then every other differing key alone
    (:data:`NO_EFFECT` keys left out)."""
    return ablation_keys.grouped_improvements(differing_keys(paper, fast), GROUPS, NO_EFFECT)


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    for section in sections:
        tree = tree[section]
    tree[last] = value


def variant_config(changes: dict[str, Any], scale: Scale) -> ExperimentConfig:
    """The paper config with ``changes`` (dotted key -> value), scaled down by ``scale``."""
    raw = to_dict(load_experiment_config(PAPER_CONFIG))
    for key, value in changes.items():
        _set(raw, key, value)
    _set(raw, "SETTINGS.COMPILE", False)
    _set(raw, "TRAINING.TOTAL_EPOCHS", scale.train_epochs)
    if raw["TEST"]["SAMPLING"] == "bscan":
        _set(raw, "TEST.TOTAL_EPOCHS", scale.test_epochs)
    patch = raw["TRAINING"]["PATCH_SIZE"] or (1 if raw["TRAINING"]["LOSS_RECON"] == "MSE" else 16)
    for section in ("TRAINING", "TEST"):
        raw[section]["BATCH_POINTS"] = max(patch * patch, round(raw[section]["BATCH_POINTS"] * scale.pixel_ratio))
    return from_dict(raw, ExperimentConfig, source="ablation variant")


def phantom_eyes(scale: Scale) -> tuple[list[Eye], list[Eye]]:
    """Dense eyes of the population's subjects, and of the held-out subjects after them."""
    phantom = PhantomConfig(n_subjects=scale.train_subjects + scale.test_subjects, shape=scale.shape)
    eyes = [[make_eye(phantom, subject, side) for side in ("OD", "OS")] for subject in range(phantom.n_subjects)]
    flat = [eye for pair in eyes for eye in pair]
    return flat[: 2 * scale.train_subjects], flat[2 * scale.train_subjects :]


def fold_data(config: ExperimentConfig, population: list[Eye], held_out: list[Eye], factor: int) -> FoldData:
    """The fold as ``pipeline.load_fold`` gives it for a tree: training inputs, truth, test inputs."""
    normalise = minmax_normalise_for(config, SCRIPT)

    def prepared(eyes: list[Eye]) -> list[Eye]:
        return [minmax_normalise_eye(eye) for eye in eyes] if normalise else list(eyes)

    train_inputs = prepared([eye.subsample(factor) for eye in population])
    # a new list, of FoldData's training-eye type (lists are invariant: a list[Eye] is not a list[Eye | StreamedEye])
    return FoldData([*train_inputs], prepared(held_out), prepared([eye.subsample(factor) for eye in held_out]))


def _gap(rows: list[dict[str, Any]], column: str) -> float:
    return next(float(row[column]) for row in rows if row["subset"] == "gap" and row[column] is not None)


def run_variant(config: ExperimentConfig, data: FoldData) -> dict[str, float]:
    """Train, fit, predict and score one variant; gap scores averaged over the held-out eyes, seconds.

    A training stopped by SIGTERM or SIGINT raises ``KeyboardInterrupt`` (the trainer takes the
    signal as "stop after this step"; the run must not go on to score a half-trained network).
    """
    with tempfile.TemporaryDirectory() as run_dir:
        experiment = Experiment(
            config, PAPER_CONFIG, CPU, Path(run_dir), resume=False, overwrite=True, progress=False, data=data
        )
        seed_everything(config.TRAINING.SEED)
        started = time.perf_counter()
        network, _, finished = train_population(experiment, data)
        if not finished:  # SIGTERM/SIGINT stopped the training: the variant's scores would mean nothing
            raise KeyboardInterrupt
        trained = time.perf_counter()
        predictions = predict_gen_inr(experiment, network, data)
        fitted = time.perf_counter()
    scores: dict[str, list[float]] = {"psnr": [], "dice": [], "paper_psnr": [], "paper_dice": []}
    for sparse, truth in zip(data.test_inputs, data.test_truth):
        mask = input_mask_from_positions(truth.bscan_positions, sparse.bscan_positions)
        method = {GEN_INR: predictions[truth.eye_id]}
        ours = score_eye(truth, mask, method, num_classes=config.MODEL.NUM_CLASSES)
        paper = score_eye_reference(truth, mask, method, sampling=config.EVALUATION.BORDER_SAMPLING)
        scores["psnr"].append(_gap(ours, "psnr"))
        scores["dice"].append(_gap(ours, "dice_mean"))
        scores["paper_psnr"].append(_gap(paper, "psnr"))
        scores["paper_dice"].append(_gap(paper, "dice_pct"))
    return {
        **{name: statistics.fmean(values) for name, values in scores.items()},
        "train_s": trained - started,
        "fit_s": fitted - trained,
        "total_s": time.perf_counter() - started,
    }


def run(scale: Scale | None = None) -> dict[str, Any]:
    """Every variant on the same phantom fold: ``{"rows": [{"variant", "keys", scores...}], "scale": ...}``.

    The rows are the paper mode, each improvement alone, then all of them (the fast config).
    """
    scale = scale or Scale()
    population, held_out = phantom_eyes(scale)
    chosen = improvements()
    variants: dict[str, dict[str, Any]] = {"paper mode (geninr_config.yaml)": {}}
    variants.update({f"+ {name}": changes for name, changes in chosen.items()})
    variants["all together (geninr_fast.yaml)"] = {k: v for changes in chosen.values() for k, v in changes.items()}
    rows = []
    for name, changes in variants.items():
        config = variant_config(changes, scale)
        result = run_variant(config, fold_data(config, population, held_out, scale.factor))
        rows.append({"variant": name, "keys": sorted(changes), **result})
        print(f"ablation: {name}: {result}", flush=True)
    return {"rows": rows, "scale": scale, "no_effect": dict(NO_EFFECT)}
