"""Densify a new eye with a saved model: fit its latent code (gen-INR), predict any B-scans.

Usage (from the repository root)::

    python anisotropic_interpolation/predict.py RUN_DIR DATA_DIR sub003_OD --subsample 4 --factor 4 --output OUT
    python -m anisotropic_interpolation.predict RUN_DIR DATA_DIR sub003_OD --positions-mm 0 0.1 0.25 --output OUT
    python -m anisotropic_interpolation.predict ... --set TEST.TOTAL_EPOCHS=50 --set TEST.LR_SCHEDULE=cosine

``RUN_DIR`` is a run folder of ``train_test_geninr.py`` (its ``model.pt``); ``DATA_DIR`` a
retina_data tree holding the eye. The eye as stored is the sparse input unless
``--subsample K`` keeps every K-th B-scan; it is checked as ``validate`` checks it and, if the
model was trained on min-max normalised eyes (``PREPROCESSING.MINMAX_NORMALISE``), normalised
the same way. The dense eye is written as a retina_data tree
(OCT, labels, SLO) under ``--output``; ``--probabilities`` also writes the class
probabilities ``[H, W, n, C]`` (float16) as ``probabilities_<eye_id>.npy``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anisotropic_interpolation.config import ExperimentConfig
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.inference import (
    DensePrediction,
    densified_positions,
    predict_volume,
    prediction_settings,
)
from anisotropic_interpolation.model import ImplicitNetwork
from anisotropic_interpolation.pipeline import (
    MODEL_FILE,
    load_model,
    minmax_normalise_for,
    precision_notice,
    select_device,
)
from retina_data.commandline import interrupt_on_sigterm, run_cli
from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.files import atomic_save, check_run_dir, prepare_run_dir
from retina_data.preprocessing import minmax_normalise_eye
from retina_data.tree import read_eye, write_eye
from retina_data.validation import eye_problems, label_count, require_valid_eyes


def add_densification_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of how an eye is densified, shared by ``predict`` and ``densify_cohort``: its
    input B-scans, the output B-scans, the probabilities and the ``--set`` changes of the fit."""
    parser.add_argument("--subsample", type=int, default=1, help="keep every K-th B-scan as input (default: all)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--factor", type=int, default=None, help="predict F times as many B-scans (default 1)")
    where.add_argument("--positions-mm", type=float, nargs="+", help="predict B-scans at these positions (mm)")
    parser.add_argument("--probabilities", action="store_true", help="also save the class probabilities")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="change a TEST, SETTINGS or EVALUATION key of the saved config, e.g. the latent-fit "
        "schedule (TEST.TOTAL_EPOCHS=50); repeatable",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run folder holding model.pt (or the model file itself)")
    parser.add_argument("data_dir", type=Path, help="retina_data tree holding the eye")
    parser.add_argument("eye_id", help="<subject>_<OD|OS>")
    add_densification_arguments(parser)
    parser.add_argument("--output", type=Path, required=True, help="output tree for the dense eye")
    parser.add_argument(
        "--gpu",
        type=int,
        default=None,
        help="CUDA device index (refused without CUDA); -1: the CPU; default: GPU 0 if there is one",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with interrupt_on_sigterm():
        return predict(args)


def model_file(run_dir: Path) -> Path:
    """The saved model of a run folder (its ``model.pt``), or ``run_dir`` itself when it is the file."""
    return run_dir / MODEL_FILE if run_dir.is_dir() else run_dir


def checked_input(
    eye: Eye,
    network: ImplicitNetwork,
    config: ExperimentConfig,
    source: str,
    where: Path | str,
    subsample: int,
    num_labels: int,
) -> tuple[Eye, Eye]:
    """The eye as stored, checked as ``validate`` checks it (``source``, ``where``: see
    :func:`~retina_data.validation.eye_problems`) and min-max normalised if the model was trained so,
    and its sparse input (every ``subsample``-th B-scan)."""
    normalise = minmax_normalise_for(config, "train_test_geninr")
    require_valid_eyes(eye_problems(eye, source, where, num_labels=num_labels, intensity_range=not normalise), where)
    if normalise:
        eye = minmax_normalise_eye(eye)
    sparse = eye.subsample(subsample) if subsample > 1 else eye
    if network.inputs.use_slo and not sparse.has_slo:
        raise DataError(f"eye {eye.eye_id}: the model takes the SLO as input but the eye has none")
    return eye, sparse


def output_positions(sparse: Eye, factor: int | None, positions_mm: Sequence[float] | None) -> np.ndarray:
    """Slow-axis positions ``[n]`` (mm) to predict: ``positions_mm`` sorted, else ``factor`` (default 1)
    times as many B-scans as ``sparse`` has."""
    if positions_mm:
        return np.sort(np.asarray(positions_mm, dtype=np.float64))
    return densified_positions(sparse.bscan_positions, factor or 1)


def densify(
    network: ImplicitNetwork,
    config: ExperimentConfig,
    device: torch.device,
    sparse: Eye,
    positions: np.ndarray,
    model_path: Path,
    *,
    fitter: LatentFitter | None = None,
    probabilities: bool = False,
    progress: bool = False,
) -> tuple[Eye, DensePrediction]:
    """Fit the latent code of ``sparse`` (with ``fitter``, default a new one) and predict it at ``positions [n]``.

    Returns the dense eye (OCT, labels ``[H, W, n]``, the input's SLO, slow-axis spacing the median
    step of ``positions``) and the prediction (with the class probabilities if asked for).
    """
    code = None
    if network.inputs.latent_size:
        fitter = fitter or LatentFitter(network, config, device)
        code = fitter.fit([sparse], progress=progress)[0]
    dense = predict_volume(
        network,
        code,
        sparse,
        positions,
        device=device,
        probabilities=probabilities,
        progress=progress,
        **prediction_settings(config),
    )
    step = float(np.median(np.diff(positions))) if positions.size > 1 else sparse.spacing[2]
    result = replace(
        sparse,
        oct=dense.intensity,
        labels=dense.labels,
        bscan_positions=positions,
        spacing=(sparse.spacing[0], sparse.spacing[1], step),
        meta={**sparse.meta, "predicted_by": str(model_path)},
    )
    return result, dense


def predict(args: argparse.Namespace) -> int:
    """Load the model and the eye, check both, then fit, predict and write the dense eye."""
    check_run_dir(args.output, overwrite=args.overwrite, resumable=False)
    device = select_device(args.gpu)
    model_path = model_file(args.run_dir)
    network, config, _ = load_model(model_path, device, args.overrides)
    precision_notice(device, config)
    subject, _, laterality = args.eye_id.rpartition("_")
    if not subject:
        raise DataError(f"eye id {args.eye_id!r}: expected <subject>_<OD|OS>")
    num_labels = max(label_count(args.data_dir), network.inputs.num_classes)
    _, sparse = checked_input(
        read_eye(args.data_dir, subject, laterality), network, config, "tree", args.data_dir, args.subsample, num_labels
    )
    positions = output_positions(sparse, args.factor, args.positions_mm)
    result, dense = densify(
        network,
        config,
        device,
        sparse,
        positions,
        model_path,
        probabilities=args.probabilities,
        progress=not args.quiet,
    )
    out = prepare_run_dir(args.output, overwrite=args.overwrite, resumable=False)
    written = write_eye(out, result, overwrite=args.overwrite)
    probabilities = dense.probabilities
    if probabilities is not None:
        written.append(
            atomic_save(
                out / f"probabilities_{args.eye_id}.npy",
                lambda tmp: np.save(tmp, probabilities),
                overwrite=args.overwrite,
            )
        )
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    run_cli(main)
