"""Ablation of the GINR atlas: the paper mode, each of our improvements switched on alone, and all together.

The improvements are the keys whose resolved values differ between the paper config
(``configs/atlas/fit_GINR_Atlas_base.yml``) and the fast config (``fit_GINR_Atlas_fast.yml``),
read from the two files (so the ablation follows them), grouped where keys only act together
(:data:`GROUPS`); keys that cannot change anything here are listed in :data:`NO_EFFECT` with the
reason, and not run.

Every variant runs a fold as ``GINR_Atlas_base.py`` does, through the same library functions
(:func:`~atlas_registration.pipeline.load_fold`, :func:`~atlas_registration.pipeline.train`,
:func:`~atlas_registration.evaluation.evaluate`): median atlas, atlas pretraining, joint GINR
training on the training eyes, then the latent-only fit of every held-out eye from all its
B-scans, scored by both protocols (ours: 3-D Dice, ASSD in mm, share of voxels with
``det J <= 0``; the paper's: 2-D Dice and ASSD in µm per B-scan, share with ``det J < 0``).

Scaled down from the paper (:class:`Scale`): phantom eyes of ``shape`` instead of the paper's
231 x 496 x 512 / 8, ``train_subjects`` training subjects (both eyes) instead of 80 eyes and
``test_subjects`` held-out subjects; and every key of :data:`SCALE_SECTIONS` that
``configs/atlas/demo_atlas.yml`` sets and the ablation does not vary is taken from the demo
(network widths, latent size, epochs, steps, learning rates, patch size, batch size,
``SUBSMPL_FACTOR: 1``: the dense phantom files), with the training and pretraining epochs
replaced by ``train_epochs`` and ``pretrain_epochs`` (by default twice the demo's: 100 and 80).
At the paper's learning rates (1e-5, 3e-5) a run of a few hundred steps would not move the
deformation at all, so the demo's schedule is the one scaled down, the same for every variant.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from atlas_registration.config import AtlasConfig, load_atlas_config
from atlas_registration.evaluation import evaluate
from atlas_registration.pipeline import load_fold, train
from benchmarks import ablation_keys
from retina_data.config import from_dict, to_dict
from retina_data.folds import write_folds
from retina_data.phantom import PhantomConfig, write_phantom
from retina_data.run_identity import flatten_config

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIG = ROOT / "configs" / "atlas" / "fit_GINR_Atlas_base.yml"
FAST_CONFIG = ROOT / "configs" / "atlas" / "fit_GINR_Atlas_fast.yml"
DEMO_CONFIG = ROOT / "configs" / "atlas" / "demo_atlas.yml"

GROUPS: dict[str, tuple[str, ...]] = {
    "cross-entropy label loss at weight 0.1 (training and pretraining)": (
        "TRAINING.SEG_WEIGHT",
        "TRAINING.SEG_LOSS",
        "ATLAS_PRETRAINING.SEG_WEIGHT",
    ),
    "pi-GAN FiLM SIREN, every layer used": ("DISP_MODEL.FILM", "DISP_MODEL.SKIP_LAST_LAYER"),
    "atlas of 5 sine layers, no linear last layer": ("ATLAS_MODEL.NUM_LAYERS", "ATLAS_MODEL.LINEAR_LAST"),
}
"""Improvements of several keys that only act together: the label terms' weights (training and
atlas pretraining, which uses ``TRAINING.SEG_LOSS`` too) belong to their loss (0.1 is a weight for
the cross-entropy; with the reference's BCE, 0.1 in pretraining alone dropped Dice from 0.82 to 0.69
in a first run of this ablation); our deformation network is the pi-GAN FiLM with all its layers
(``SKIP_LAST_LAYER`` alone would give the reference's FiLM a fourth layer, not run here); the
atlas's depth and its last layer are one architecture."""

NO_EFFECT: dict[str, str] = {
    "RUNTIME.PRECISION": "null means bf16-mixed only on GPUs with native bf16; this runs on the CPU in fp32, "
    "as '32-true'",
}
"""Differing keys that cannot change this experiment's numbers, with the reason."""

SCALE_SECTIONS = ("TRAINING", "TEST", "DISP_MODEL", "ATLAS_MODEL", "ATLAS_PRETRAINING", "DATA")
"""Sections whose keys the demo config sets are taken from it (the scale), unless the ablation varies them."""


@dataclass(frozen=True)
class Scale:
    """How far the experiment is scaled down from the paper (see the module docstring)."""

    shape: tuple[int, int, int] = (64, 16, 64)
    train_subjects: int = 4
    test_subjects: int = 2
    seeds: tuple[int, ...] = (0, 1, 2)
    train_epochs: int = 100
    pretrain_epochs: int = 80

    def describe(self) -> str:
        height, width, depth = self.shape
        return (
            f"phantom eyes of {height} x {width} x {depth} (paper 231 x 496 x 64 at SUBSMPL_FACTOR 8), "
            f"{2 * self.train_subjects} training eyes of {self.train_subjects} subjects (paper 80 eyes), "
            f"{2 * self.test_subjects} held-out eyes of {self.test_subjects} other subject(s) fitted from all "
            f"their B-scans; the keys of {', '.join(SCALE_SECTIONS)} that demo_atlas.yml sets (and the "
            f"ablation does not vary) from the demo, with TRAINING.TOTAL_EPOCHS {self.train_epochs} (paper "
            f"2000) and ATLAS_PRETRAINING.TOTAL_EPOCHS {self.pretrain_epochs} (paper 500); every variant run "
            f"with SETTINGS.SEED {', '.join(map(str, self.seeds))} and averaged"
        )


def differing_keys(paper: Path = PAPER_CONFIG, fast: Path = FAST_CONFIG) -> dict[str, Any]:
    """Dotted key -> fast value, for every key whose resolved value differs between the two configs."""
    return ablation_keys.differing_keys(load_atlas_config(paper), load_atlas_config(fast))


def improvements(paper: Path = PAPER_CONFIG, fast: Path = FAST_CONFIG) -> dict[str, dict[str, Any]]:
    """Improvement name -> {dotted key: fast value}: the groups, then every other differing key alone
    (:data:`NO_EFFECT` keys left out)."""
    return ablation_keys.grouped_improvements(differing_keys(paper, fast), GROUPS, NO_EFFECT)


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *sections, last = key.split(".")
    for section in sections:
        tree = tree.setdefault(section, {})
    tree[last] = value


def scale_keys(varied: set[str], demo: Path = DEMO_CONFIG) -> dict[str, Any]:
    """Dotted key -> demo value for every key of :data:`SCALE_SECTIONS` the demo config sets, except ``varied``."""
    with open(demo, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    given = {section: raw.get(section) or {} for section in SCALE_SECTIONS}
    return {key: value for key, value in flatten_config(given).items() if key not in varied}


def variant_config(
    changes: dict[str, Any], scale: Scale, data_dir: Path, fold_file: Path, seed: int = 0
) -> AtlasConfig:
    """The paper config scaled down by ``scale`` (demo keys, epochs, the phantom) with ``changes``."""
    raw = to_dict(load_atlas_config(PAPER_CONFIG))
    for key, value in scale_keys(set(differing_keys())).items():
        _set(raw, key, value)
    for key, value in changes.items():
        _set(raw, key, value)
    settings = {"DATA_DIR": str(data_dir), "FOLD_FILE": str(fold_file), "FOLD": 0, "SEED": seed}
    for key, value in settings.items():
        _set(raw, f"SETTINGS.{key}", value)
    for key, value in {
        "TRAINING.TOTAL_EPOCHS": scale.train_epochs,
        "ATLAS_PRETRAINING.TOTAL_EPOCHS": scale.pretrain_epochs,
        "TRAINING.VAL_EVERY": scale.train_epochs + 1,
        "TRAINING.CHECKPOINT_EVERY": scale.train_epochs,
        "EVALUATION.MAX_TEST_EYES": None,
        "EVALUATION.RESOLUTION_SUBJECTS": scale.test_subjects,
        "EVALUATION.RESOLUTION_FACTORS": [1],
        "EVALUATION.BASELINES": [],
        "EVALUATION.ATLAS_SHAPES": [],
        "EVALUATION.FIGURES": False,
        "RUNTIME.ACCELERATOR": "cpu",
        "RUNTIME.DEVICES": 1,
        "RUNTIME.LOGGERS": ["csv"],
        "RUNTIME.PROGRESS_BAR": False,
    }.items():
        _set(raw, key, value)
    return from_dict(raw, AtlasConfig, source="atlas ablation variant")


def write_fold_data(root: Path, scale: Scale) -> tuple[Path, Path]:
    """The phantom tree and a one-fold file: the first ``train_subjects`` train, the rest are held out."""
    subjects = scale.train_subjects + scale.test_subjects
    data_dir = root / "phantom"
    eye_ids = write_phantom(data_dir, PhantomConfig(n_subjects=subjects, shape=scale.shape), progress=False)
    names = list(dict.fromkeys(eye_id.split("_")[0] for eye_id in eye_ids))
    fold_file = write_folds(
        root / "folds.yml", {0: {"TRAIN": names[: scale.train_subjects], "TEST": names[scale.train_subjects :]}}
    )
    return data_dir, fold_file


def run_variant(cfg: AtlasConfig, run_dir: Path) -> dict[str, float]:
    """Train and evaluate one variant; GINR's scores averaged over the held-out eyes, and seconds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fold = load_fold(cfg)
    model = train(cfg, fold, run_dir, resume=False)
    trained = time.perf_counter()
    rows = evaluate(cfg, fold, model, run_dir)
    finished = time.perf_counter()
    ours = [row for row in rows.ours if row["method"] == "ginr"]
    paper = [row for row in rows.reference if row["method"] == "ginr"]

    def mean(selected: list[dict[str, Any]], column: str) -> float:
        return statistics.fmean(float(row[column]) for row in selected)

    return {
        "dice": mean(ours, "dice_mean"),
        "assd_mm": mean(ours, "assd_mean"),
        "folding_pct": mean(ours, "pct_nonpositive_jacobian"),
        "paper_dice": mean(paper, "dice_mean"),
        "paper_assd_um": mean(paper, "assd_um"),
        "paper_folding_pct": mean(paper, "pct_negative_jacobian"),
        "fit_s": mean(ours, "time_s"),
        "train_s": trained - started,
        "total_s": finished - started,
    }


def run(scale: Scale | None = None) -> dict[str, Any]:
    """Every variant on the same phantom fold: ``{"rows": [{"variant", "keys", scores...}], "scale", "no_effect"}``.

    The rows are the paper mode, each improvement alone, then all of them (the fast config's values);
    scores are means over the seeds, ``dice_seed_spread`` the largest minus the smallest Dice.
    """
    scale = scale or Scale()
    chosen = improvements()
    variants: dict[str, dict[str, Any]] = {"paper mode (fit_GINR_Atlas_base.yml)": {}}
    variants.update({f"+ {name}": changes for name, changes in chosen.items()})
    variants["all together (fit_GINR_Atlas_fast.yml)"] = {
        key: value for changes in chosen.values() for key, value in changes.items()
    }
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        data_dir, fold_file = write_fold_data(root, scale)
        for index, (name, changes) in enumerate(variants.items()):
            runs = [
                run_variant(variant_config(changes, scale, data_dir, fold_file, seed), root / f"run{index}_{seed}")
                for seed in scale.seeds
            ]
            result = {column: statistics.fmean(run[column] for run in runs) for column in runs[0]}
            result["dice_seed_spread"] = max(run["dice"] for run in runs) - min(run["dice"] for run in runs)
            rows.append({"variant": name, "keys": sorted(changes), **result})
            print(f"atlas ablation: {name}: {result}", flush=True)
    return {"rows": rows, "scale": scale, "no_effect": dict(NO_EFFECT)}
