"""The whole flow of one fold: data -> median atlas -> atlas INR -> GINR training -> evaluation.

Evaluation registers the test eyes with GINR (latent-only inference) from every
``EVALUATION.RESOLUTION_FACTORS``-th B-scan and with each baseline from all B-scans, and
scores them by two protocols, each with its own tables: ours (every B-scan of the dense eye,
3-D metrics: ``results/summary.md``) and the paper's (2-D metrics per B-scan on the B-scans
fitted: ``results/summary_reference.md``); see :func:`evaluate`.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.rank_zero import rank_zero_only
from tqdm import tqdm

from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.coordinates import grid_extent
from atlas_registration.datasets.eyes import FoldEyes, read_fold_eyes
from atlas_registration.architectures.atlas import AtlasINR
from atlas_registration.experiments.atlas_building import (
    PRETRAIN_STAGE,
    build_median_atlas,
    load_pretrained_atlas,
    pretrain_atlas,
)
from atlas_registration.experiments.eye_registration import (
    CLASSICAL_BASELINES,
    EyeRegistration,
    atlas_on_eye_grid,
    idir_fit,
    latent_fit,
    reference_affine_fit,
    reference_inr_fit,
    register_classical,
    register_inr,
    score,
    score_reference,
    seed_fit,
)
from atlas_registration.experiments.outputs import write_atlas_volumes, write_eye_outputs
from atlas_registration.experiments.training import train_registration
from atlas_registration.routines.atlas_pretraining import AtlasPretraining
from atlas_registration.routines.prediction import GridPrediction
from atlas_registration.routines.registration import GINRAtlasRegistration
from atlas_registration.routines.trainer import (
    checkpoint_path,
    device_name,
    end_distributed,
    inference_device,
    precision,
)
from atlas_registration.utilities.evaluation import (
    resolution_summary,
    resolution_table,
    summarise,
    summary_markdown,
    table_names,
    write_metrics_tables,
)
from atlas_registration.utilities.figures import plot_resolution
from atlas_registration.utilities.label_mapping import LabelMapping
from retina_data.config import save_config
from retina_data.errors import ConfigError, DataError
from retina_data.eye import Eye
from retina_data.files import atomic_write_text, prepare_run_dir
from retina_data.provenance import write_run_record


@dataclass
class Fold:
    """The data of one fold as the atlas sees it."""

    eyes: FoldEyes
    mapping: LabelMapping
    extent_mm: tuple[float, float, float]


def run_folder(cfg: AtlasConfig, output: str | None) -> Path:
    """``--output``, or ``RESULT_DIR/<PROJECT_NAME>_fold<FOLD>``."""
    if output:
        return Path(output)
    return Path(cfg.SETTINGS.RESULT_DIR or ".") / f"{cfg.SETTINGS.PROJECT_NAME}_fold{cfg.SETTINGS.FOLD}"


def start_run(cfg: AtlasConfig, output: str | None, overwrite: bool, resume: bool) -> Path:
    """Prepare the run folder (refusing old results without --overwrite/--resume) and its records.

    ``overwrite`` also removes the old run's checkpoints and logs, so a later ``--resume`` cannot pick
    them up.
    Under DDP the other ranks re-run the script once training starts; they use the folder rank 0
    prepared.
    """
    if rank_zero_only.rank > 0:
        return run_folder(cfg, output)
    run_dir = prepare_run_dir(run_folder(cfg, output), overwrite=overwrite, resume=resume)
    if overwrite:
        for stale in ("checkpoints", "logs", "tensorboard"):
            shutil.rmtree(run_dir / stale, ignore_errors=True)
    write_run_record(run_dir, device_name(cfg.RUNTIME), {"precision": precision(cfg.RUNTIME), "resume": resume,
                                                         "overwrite": overwrite})
    return run_dir


def load_fold(cfg: AtlasConfig) -> Fold:
    """Read the fold's eyes (training eyes from the ``DATA.SUBSMPL_FACTOR`` files, test eyes dense) and fix
    the coordinate extent (``DATA.EXTENT_MM`` or the first training eye's grid)."""
    if not cfg.SETTINGS.DATA_DIR:
        raise ConfigError("SETTINGS.DATA_DIR is empty: set it to the retina_data NIfTI tree "
                          "(<subject>/<OD|OS>/oct_flat_<od|os>.nii.gz) or pass --set SETTINGS.DATA_DIR=PATH")
    mapping = LabelMapping.from_config(cfg.LABELS.MAPPING, cfg.LABELS.NAMES)
    eyes = read_fold_eyes(cfg.SETTINGS.DATA_DIR, cfg.SETTINGS.FOLD_FILE, cfg.SETTINGS.FOLD, mapping, cfg.DATA.FLIP_OS,
                          cfg.DATA.SUBSMPL_FACTOR, cfg.DATA.CACHE_DIR or None)
    reference = eyes.train[0]
    extent = tuple(cfg.DATA.EXTENT_MM) if cfg.DATA.EXTENT_MM else grid_extent(reference.shape, reference.spacing)
    return Fold(eyes, mapping, extent)  # type: ignore[arg-type]


def save_resolved_config(cfg: AtlasConfig, fold: Fold, run_dir: Path) -> None:
    """The config as run, with the derived coordinate extent filled in."""
    cfg.DATA.EXTENT_MM = list(fold.extent_mm)
    save_config(cfg, run_dir / "config.yaml")


def build_atlas(cfg: AtlasConfig, fold: Fold, run_dir: Path, resume: bool) -> AtlasPretraining:
    """The median atlas (NIfTI) and the atlas INR: pretrained here or loaded from ``ATLAS_MODEL.PATH``."""
    median = build_median_atlas(fold.eyes.train, run_dir / "atlas" / "median", reuse=resume)
    if cfg.ATLAS_MODEL.PATH:
        return load_pretrained_atlas(cfg, cfg.ATLAS_MODEL.PATH, fold.mapping.num_classes)
    return pretrain_atlas(cfg, median, fold.eyes.train[0], fold.extent_mm, fold.mapping.num_classes, run_dir, resume)


def train(cfg: AtlasConfig, fold: Fold, run_dir: Path, resume: bool) -> GINRAtlasRegistration:
    """Median atlas, atlas pretraining and joint GINR training of the fold's training eyes.

    Under DDP every rank trains; afterwards the process group is left, and only rank 0
    (``model.trainer.is_global_zero``) should go on to evaluate.
    """
    pretrained = build_atlas(cfg, fold, run_dir, resume)
    model = train_registration(cfg, fold.eyes.train, fold.extent_mm, pretrained.atlas, fold.mapping.num_classes,
                               run_dir, resume)
    end_distributed()
    return model


@dataclass
class EvaluationRows:
    """The metric rows of an evaluation, one list per protocol (one row per eye, method and factor)."""

    ours: list[dict[str, Any]]
    reference: list[dict[str, Any]]


def resolution_eyes(test_eyes: Sequence[Eye], subjects: int) -> list[Eye]:
    """The eyes of the last ``subjects`` test subjects (the paper's resolution experiment), in order."""
    order = list(dict.fromkeys(eye.subject for eye in test_eyes))
    chosen = set(order[-subjects:])
    return [eye for eye in test_eyes if eye.subject in chosen]


def pretrained_atlas(cfg: AtlasConfig, trained_run: Path, num_classes: int) -> AtlasINR:
    """The atlas INR before joint fine-tuning: ``ATLAS_MODEL.PATH`` or the run's pretraining checkpoint."""
    path = cfg.ATLAS_MODEL.PATH or checkpoint_path(trained_run, PRETRAIN_STAGE)
    return load_pretrained_atlas(cfg, path, num_classes).atlas.requires_grad_(False).eval()


def evaluate(cfg: AtlasConfig, fold: Fold, model: GINRAtlasRegistration, run_dir: Path,
             factors: Sequence[int] | None = None, baselines: Sequence[str] | None = None,
             trained_run: Path | None = None) -> EvaluationRows:
    """Register and score the fold's test eyes by both protocols; writes volumes, tables and figures.

    The resolution experiment fits GINR on every k-th B-scan (k in ``factors``) of the first
    ``MAX_TEST_EYES`` test eyes (ours: scored on every B-scan of the dense eye) and of the eyes
    of the last ``RESOLUTION_SUBJECTS`` test subjects (the paper's: scored on the B-scans fitted);
    an eye in both sets is fitted once. The baselines run on the first ``MAX_TEST_EYES`` eyes from
    all B-scans and are scored by both protocols. ``trained_run``: the run folder holding the
    pretraining checkpoint for ``reference_inr`` (default ``run_dir``). Prints both summaries.
    """
    ev = cfg.EVALUATION
    factors = list(ev.RESOLUTION_FACTORS if factors is None else factors)
    baselines = list(ev.BASELINES if baselines is None else baselines)
    ours_eyes = fold.eyes.test[: ev.MAX_TEST_EYES]
    if not ours_eyes:
        raise DataError(f"{cfg.SETTINGS.FOLD_FILE}: FOLD.{cfg.SETTINGS.FOLD}.TEST holds no eyes to evaluate")
    paper_ids = {eye.eye_id for eye in resolution_eyes(fold.eyes.test, ev.RESOLUTION_SUBJECTS)}
    ours_ids = {eye.eye_id for eye in ours_eyes}
    model.freeze()
    atlas_shape = fold.eyes.train[0].shape
    num_classes, chunk = fold.mapping.num_classes, ev.CHUNK_POINTS
    for shape in [atlas_shape, *map(tuple, ev.ATLAS_SHAPES)]:
        write_atlas_volumes(model.atlas, shape, fold.extent_mm, run_dir / "atlas" / "inr_{}x{}x{}".format(*shape),
                            chunk, fold.mapping.names, ev.FIGURES)
    rows = EvaluationRows([], [])
    jobs = [(i, eye, f) for i, eye in enumerate(fold.eyes.test) if eye.eye_id in ours_ids | paper_ids
            for f in factors]
    for index, eye, factor in tqdm(jobs, desc="GINR inference", unit="fit"):
        if eye.shape[2] < factor:
            raise DataError(f"eye {eye.eye_id}: {eye.shape[2]} B-scans cannot be subsampled by {factor}")
        seed_fit(cfg.SETTINGS.SEED, index, factor)
        sparse = eye.subsample(factor)
        scored_on = eye if eye.eye_id in ours_ids else sparse
        registration = register_inr(cfg, latent_fit(cfg, model.atlas, model.deformation), sparse, scored_on,
                                    fold.extent_mm, cfg.TEST.TOTAL_EPOCHS)
        key = {"eye_id": eye.eye_id, "method": "ginr", "factor": factor, "bscans": sparse.shape[2]}
        if eye.eye_id in ours_ids:
            rows.ours.append({**key, **score(registration, eye, num_classes)})
        if eye.eye_id in paper_ids or (factor == 1 and eye.eye_id in ours_ids):
            on_sparse = registration.bscans(factor) if scored_on is eye else registration
            rows.reference.append({**key, **score_reference(cfg, on_sparse, sparse, num_classes)})
        if factor == 1 and eye.eye_id in ours_ids:
            before = atlas_on_eye_grid(model.atlas, eye, fold.extent_mm, chunk).labels
            write_eye_outputs(registration, eye, run_dir / "eyes" / eye.eye_id, cfg.DATA.FLIP_OS, atlas_shape,
                              fold.extent_mm, chunk, before, inference_device(cfg.RUNTIME), ev.FIGURES)
    pretrained = (pretrained_atlas(cfg, trained_run or run_dir, num_classes).to(inference_device(cfg.RUNTIME))
                  if "reference_inr" in baselines else None)
    for index, eye in enumerate(tqdm(ours_eyes, desc="baselines", unit="eye")):
        atlas_grid = atlas_on_eye_grid(model.atlas, eye, fold.extent_mm, chunk)
        for method in baselines:
            registration = run_baseline(cfg, method, model, pretrained, atlas_grid, eye, fold.extent_mm, index)
            key = {"eye_id": eye.eye_id, "method": method, "factor": 1, "bscans": eye.shape[2]}
            rows.ours.append({**key, **score(registration, eye, num_classes)})
            rows.reference.append({**key, **score_reference(cfg, registration, eye, num_classes)})
    write_tables(rows, run_dir / "results", factors, ev.FIGURES)
    return rows


def run_baseline(cfg: AtlasConfig, method: str, model: GINRAtlasRegistration, pretrained: AtlasINR | None,
                 atlas_grid: GridPrediction, eye: Eye, extent_mm: Sequence[float], index: int) -> EyeRegistration:
    """One baseline on one dense eye: a per-eye INR or affine fit, or a classical (SimpleITK) method.

    ``pretrained``: the atlas before fine-tuning, which ``reference_inr`` registers to.
    """
    seed_fit(cfg.SETTINGS.SEED, index, 1)
    if method == "idir":
        return register_inr(cfg, idir_fit(cfg, model.atlas), eye, eye, extent_mm, cfg.EVALUATION.IDIR_EPOCHS)
    if method == "reference_affine":
        return register_inr(cfg, reference_affine_fit(cfg, model.atlas), eye, eye, extent_mm,
                            cfg.EVALUATION.REFERENCE_BASELINE_EPOCHS)
    if method == "reference_inr":
        if pretrained is None:
            raise DataError("baseline 'reference_inr' needs the pretrained atlas")
        return register_inr(cfg, reference_inr_fit(cfg, pretrained), eye, eye, extent_mm,
                            cfg.EVALUATION.REFERENCE_BASELINE_EPOCHS)
    if method not in CLASSICAL_BASELINES:
        raise DataError(f"unknown baseline {method!r}")
    return register_classical(cfg, method, atlas_grid, eye)


SUMMARY_COLUMNS: dict[str, tuple[str, ...]] = {
    "": ("bscans", "dice_mean", "assd_mean", "hd95_mean", "ssim", "pct_nonpositive_jacobian", "time_s"),
    "reference": ("bscans", "dice_mean", "assd_um", "ssim", "pct_negative_jacobian", "time_s"),
}
"""The columns of each protocol's printed summary (the files hold every column)."""


def write_tables(rows: EvaluationRows, out_dir: Path, factors: Sequence[int], figures: bool) -> None:
    """Both protocols' tables (per-eye CSVs, summary CSV + Markdown, resolution table), the plot, and
    both summaries printed."""
    titles = {"": "Our protocol: every B-scan of the dense eye, 3-D metrics (ASSD/HD95 in mm)",
              "reference": "The paper's protocol: 2-D metrics per B-scan on the B-scans fitted, in blocks "
                           "(ASSD in µm)"}
    for protocol, protocol_rows in (("", rows.ours), ("reference", rows.reference)):
        write_metrics_tables(protocol_rows, out_dir, overwrite=True, protocol=protocol)
        table = resolution_table([r for r in protocol_rows if r["method"] in ("ginr", "atlas")], "dice_mean",
                                 factors)
        suffix = f"_{protocol}" if protocol else ""
        atomic_write_text(out_dir / f"resolution{suffix}.md", table + "\n")
        print(f"\n{titles[protocol]} ({out_dir / table_names(protocol)['md']}):\n")
        print(summary_markdown(summarise(protocol_rows), SUMMARY_COLUMNS[protocol]))
    if figures:
        ginr_rows = [row for row in rows.ours if row["method"] == "ginr"]
        plot_resolution(resolution_summary(ginr_rows, "dice_mean"), out_dir / "resolution.png", overwrite=True)


def load_trained(checkpoint: str | Path, fold: Fold) -> GINRAtlasRegistration:
    """A trained GINR registration from its Lightning checkpoint, checked against the fold's classes."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: checkpoint not found (train first, or pass --checkpoint)")
    model = GINRAtlasRegistration.load_from_checkpoint(checkpoint, map_location="cpu")
    if model.hparams.num_classes != fold.mapping.num_classes:
        raise DataError(f"{checkpoint}: atlas has {model.hparams.num_classes} classes, "
                        f"LABELS gives {fold.mapping.num_classes}")
    return model
