"""Evaluation: registering the fold's test eyes with GINR and the baselines, and scoring them.

Two protocols score a registration, each with its own tables
(:mod:`atlas_registration.reporting`):

- ours, :func:`score`: every B-scan of the dense eye, 3-D metrics (:func:`registration_metrics`);
- the paper's, :func:`score_reference`: 2-D metrics per B-scan on the B-scans fitted, in blocks
  (:mod:`atlas_registration.bscan_metrics`), and the share of folding voxels.

One row (a flat ``dict``) per eye and method: the metric functions compute it, :func:`evaluate`
adds ``eye_id``, ``method``, ``factor`` (the B-scan subsampling factor of the fit) and ``bscans``.

Metric columns of ours: ``dice_<k>`` for every class ``k`` and ``dice_mean`` over the foreground
classes 1..K-1; ``assd_mean`` / ``hd95_mean``: symmetric average and 95th-percentile
surface distance (mm) between the 3-D region of each foreground class in the two volumes
(MONAI, via :func:`retina_data.metrics.surface_distances`), averaged over classes;
``ssim`` (mean over B-scans); ``pct_nonpositive_jacobian`` (percentage of voxels where the
deformation folds); ``time_s``. NaN (a class absent from both volumes) is left out of a mean.

With our protocol's rows goes a third table, :func:`thickness_errors`: the mean absolute layer
thickness error (µm) per ETDRS sector of the registered atlas labels against the eye's, as the
interpolation tree's evaluation writes it (``summary_thickness.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from atlas_registration.baselines.methods import run_baseline
from atlas_registration.bscan_metrics import reference_metrics
from atlas_registration.config import AtlasConfig
from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.fitting import EyeRegistration, latent_fit, register_inr, seed_fit
from atlas_registration.inference import atlas_on_eye_grid
from atlas_registration.jacobian import jacobian_determinant, negative_fraction, nonpositive_fraction
from atlas_registration.pipeline import evaluated_test_eyes
from atlas_registration.reporting import write_atlas_volumes, write_eye_outputs, write_tables
from atlas_registration.routines.registration import GINRAtlasRegistration
from atlas_registration.trainers import inference_device
from atlas_registration.training import pretrained_atlas
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.metrics import dice_per_class, foreground_mean, ssim, surface_distances
from retina_data.thickness import etdrs_errors, relabelled_groups

if TYPE_CHECKING:
    from atlas_registration.pipeline import Fold


def registration_metrics(
    warped_labels: np.ndarray,
    target_labels: np.ndarray,
    spacing_mm: Sequence[float],
    num_classes: int,
    warped_intensity: np.ndarray | None = None,
    target_intensity: np.ndarray | None = None,
    displacement_mm: np.ndarray | None = None,
    seconds: float | None = None,
) -> dict[str, float]:
    """Metrics of one registered eye (see the module docstring for the columns).

    Args:
        warped_labels: atlas labels warped onto the eye ``[H, W, D]``, values in ``0..K-1``.
        target_labels: the eye's labels ``[H, W, D]`` (same class set).
        spacing_mm: ``(dH, dW, dD)`` in mm.
        num_classes: ``K``.
        warped_intensity, target_intensity: ``[H, W, D]`` intensities for ``ssim`` (both or
            neither).
        displacement_mm: ``u [3, H, W, D]`` for ``pct_nonpositive_jacobian``.
        seconds: registration time, reported as ``time_s``.

    Returns:
        ``{column: value}``; only the columns whose inputs were given.
    """
    dice = dice_per_class(warped_labels, target_labels, num_classes)
    row: dict[str, float] = {f"dice_{k}": float(value) for k, value in enumerate(dice)}
    row["dice_mean"] = foreground_mean(dice)
    distances = surface_distances(warped_labels, target_labels, spacing_mm, range(1, num_classes))
    row["assd_mean"] = _nanmean(distances["assd"])
    row["hd95_mean"] = _nanmean(distances["hd95"])
    if warped_intensity is not None and target_intensity is not None:
        row["ssim"] = ssim(warped_intensity, target_intensity)
    elif warped_intensity is not None or target_intensity is not None:
        raise ValueError("give both warped_intensity and target_intensity for SSIM, or neither")
    if displacement_mm is not None:
        det = jacobian_determinant(displacement_mm, spacing_mm)
        row["pct_nonpositive_jacobian"] = 100.0 * nonpositive_fraction(det)
    if seconds is not None:
        row["time_s"] = float(seconds)
    return row


def _nanmean(values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[~np.isnan(finite)]
    return float(finite.mean()) if finite.size else float("nan")


def score(registration: EyeRegistration, eye: Eye, num_classes: int) -> dict[str, float]:
    """The metric row of one registration against the dense eye's labels and intensities."""
    return registration_metrics(
        registration.labels,
        eye.required_labels("scoring a registration"),
        eye.spacing,
        num_classes,
        warped_intensity=registration.intensity,
        target_intensity=eye.oct,
        displacement_mm=registration.displacement_mm,
        seconds=registration.seconds,
    )


def score_reference(cfg: AtlasConfig, registration: EyeRegistration, eye: Eye, num_classes: int) -> dict[str, float]:
    """The paper's metric row (2-D, per B-scan, in blocks) of a registration on ``eye``'s own grid.

    Adds ``pct_negative_jacobian``: the share of voxels with ``det(I + grad u) < 0`` (the paper's
    folding; the reference code's ``det(2I + grad u)`` is a bug), NaN with a single B-scan.
    """
    ev = cfg.EVALUATION
    spacing_hw = ev.REFERENCE_SPACING_MM or eye.spacing[:2]
    row = reference_metrics(
        registration.labels,
        eye.required_labels("scoring a registration"),
        num_classes,
        spacing_hw,
        registration.intensity,
        eye.oct,
        ev.REFERENCE_BLOCK_BSCANS,
    )
    folding = float("nan")
    if min(eye.shape) >= 2:
        folding = 100.0 * negative_fraction(jacobian_determinant(registration.displacement_mm, eye.spacing))
    row["pct_negative_jacobian"] = folding
    row["time_s"] = float(registration.seconds)
    return row


def in_eye_orientation(eye: Eye, labels: np.ndarray | None, flip_os: bool) -> Eye:
    """``eye`` (as the atlas reads it) with ``labels [H, W, D]`` in place of its own, both in the eye's
    own orientation: a left eye the atlas mirrored (``DATA.FLIP_OS``) is mirrored back (views, no copies)."""
    if not (flip_os and eye.laterality == "OS"):
        return replace(eye, labels=labels)
    return replace(
        eye,
        oct=eye.oct[:, ::-1],
        labels=None if labels is None else labels[:, ::-1],
        slo=None if eye.slo is None else eye.slo[::-1],
    )


def thickness_errors(
    registration: EyeRegistration, eye: Eye, mapping: LabelMapping, flip_os: bool
) -> list[dict[str, Any]]:
    """Mean absolute layer-thickness error (µm) per ETDRS sector of a registration's atlas labels
    against the eye's (:func:`retina_data.thickness.etdrs_errors`), both on the eye's grid, in the
    eye's own orientation (so that nasal is nasal), per layer group of the atlas classes
    (:func:`retina_data.thickness.relabelled_groups`: the retina and each class; a merged class such
    as IS+EZ spans the outer boundaries of its layers). Rows ``{eye_id, group, C, S1, ..., T2}``."""
    truth = in_eye_orientation(eye, eye.labels, flip_os)
    prediction = in_eye_orientation(eye, registration.labels, flip_os)
    return etdrs_errors(prediction, truth, relabelled_groups(mapping.table, mapping.names))


@dataclass
class EvaluationRows:
    """The metric rows of an evaluation, one list per protocol (one row per eye, method and factor) and
    the thickness errors of our protocol's registrations (one row per eye, method, factor and layer group)."""

    ours: list[dict[str, Any]]
    reference: list[dict[str, Any]]
    thickness: list[dict[str, Any]] = field(default_factory=list)


def resolution_eyes(test_eyes: Sequence[Eye], subjects: int) -> list[Eye]:
    """The eyes of the last ``subjects`` test subjects (the paper's resolution experiment), in order."""
    order = list(dict.fromkeys(eye.subject for eye in test_eyes))
    chosen = set(order[-subjects:])
    return [eye for eye in test_eyes if eye.subject in chosen]


def ginr_jobs(cfg: AtlasConfig, fold: Fold, factors: Sequence[int] | None = None) -> list[tuple[int, Eye, int]]:
    """The GINR fits of :func:`evaluate`: ``(test-eye index, eye, factor)`` for every factor (default
    ``EVALUATION.RESOLUTION_FACTORS``) of the first ``MAX_TEST_EYES`` test eyes and of the
    resolution experiment's eyes. The entry scripts call it before training, so a fold without
    test eyes or an eye with fewer B-scans than a factor is refused before anything is written."""
    ev = cfg.EVALUATION
    factors = list(ev.RESOLUTION_FACTORS if factors is None else factors)
    fitted = {eye.eye_id for eye in evaluated_test_eyes(cfg, fold)}
    fitted |= {eye.eye_id for eye in resolution_eyes(fold.eyes.test, ev.RESOLUTION_SUBJECTS)}
    jobs = [(i, eye, f) for i, eye in enumerate(fold.eyes.test) if eye.eye_id in fitted for f in factors]
    for _, eye, factor in jobs:
        if eye.shape[2] < factor:
            raise DataError(
                f"eye {eye.eye_id}: {eye.shape[2]} B-scans cannot be subsampled by {factor} "
                "(EVALUATION.RESOLUTION_FACTORS)"
            )
    return jobs


def evaluate(
    cfg: AtlasConfig,
    fold: Fold,
    model: GINRAtlasRegistration,
    run_dir: Path,
    factors: Sequence[int] | None = None,
    baselines: Sequence[str] | None = None,
    trained_run: Path | None = None,
) -> EvaluationRows:
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
    jobs = ginr_jobs(cfg, fold, factors)
    baselines = list(ev.BASELINES if baselines is None else baselines)
    ours_eyes = evaluated_test_eyes(cfg, fold)
    paper_ids = {eye.eye_id for eye in resolution_eyes(fold.eyes.test, ev.RESOLUTION_SUBJECTS)}
    ours_ids = {eye.eye_id for eye in ours_eyes}
    model.freeze()
    atlas_shape = fold.eyes.train[0].shape
    num_classes, chunk = fold.mapping.num_classes, ev.CHUNK_POINTS
    for shape in [atlas_shape, *map(tuple, ev.ATLAS_SHAPES)]:
        write_atlas_volumes(
            model.atlas,
            shape,
            fold.extent_mm,
            run_dir / "atlas" / "inr_{}x{}x{}".format(*shape),
            chunk,
            fold.mapping.names,
            ev.FIGURES,
        )
    rows = EvaluationRows([], [])
    for index, eye, factor in tqdm(jobs, desc="GINR inference", unit="fit"):
        seed_fit(cfg.SETTINGS.SEED, index, factor)
        sparse = eye.subsample(factor)
        scored_on = eye if eye.eye_id in ours_ids else sparse
        registration = register_inr(
            cfg,
            latent_fit(cfg, model.atlas, model.deformation),
            sparse,
            scored_on,
            fold.extent_mm,
            cfg.TEST.TOTAL_EPOCHS,
        )
        key = {"eye_id": eye.eye_id, "method": "ginr", "factor": factor, "bscans": sparse.shape[2]}
        if eye.eye_id in ours_ids:
            rows.ours.append({**key, **score(registration, eye, num_classes)})
            rows.thickness += [
                {**key, **row} for row in thickness_errors(registration, eye, fold.mapping, cfg.DATA.FLIP_OS)
            ]
        if eye.eye_id in paper_ids or (factor == 1 and eye.eye_id in ours_ids):
            on_sparse = registration.bscans(factor) if scored_on is eye else registration
            rows.reference.append({**key, **score_reference(cfg, on_sparse, sparse, num_classes)})
        if factor == 1 and eye.eye_id in ours_ids:
            before = atlas_on_eye_grid(model.atlas, eye, fold.extent_mm, chunk).labels
            write_eye_outputs(
                registration,
                eye,
                run_dir / "eyes" / eye.eye_id,
                cfg.DATA.FLIP_OS,
                atlas_shape,
                fold.extent_mm,
                chunk,
                before,
                inference_device(cfg.RUNTIME),
                ev.FIGURES,
                fold.mapping.names,
            )
    pretrained = (
        pretrained_atlas(cfg, trained_run or run_dir, num_classes).to(inference_device(cfg.RUNTIME))
        if "reference_inr" in baselines
        else None
    )
    for index, eye in enumerate(tqdm(ours_eyes, desc="baselines", unit="eye")):
        atlas_grid = atlas_on_eye_grid(model.atlas, eye, fold.extent_mm, chunk)
        for method in baselines:
            registration = run_baseline(cfg, method, model, pretrained, atlas_grid, eye, fold.extent_mm, index)
            key = {"eye_id": eye.eye_id, "method": method, "factor": 1, "bscans": eye.shape[2]}
            rows.ours.append({**key, **score(registration, eye, num_classes)})
            rows.reference.append({**key, **score_reference(cfg, registration, eye, num_classes)})
            rows.thickness += [
                {**key, **row} for row in thickness_errors(registration, eye, fold.mapping, cfg.DATA.FLIP_OS)
            ]
    write_tables(rows, run_dir / "results", factors, ev.FIGURES)
    return rows
