"""What the two inference entry scripts share: a trained checkpoint applied to the fold's unseen eyes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from atlas_registration.commandline import base_parser, load_from_args
from atlas_registration.evaluation import evaluate, ginr_jobs
from atlas_registration.pipeline import evaluate_until_stopped, load_fold, load_trained, run_folder, start_run
from atlas_registration.trainers import checkpoint_path
from atlas_registration.training import REGISTRATION_STAGE
from retina_data.commandline import EXIT_INTERRUPTED
from retina_data.run_identity import check_unseen_test_eyes


def run_inference(description: str, argv: Sequence[str] | None, subfolder: str, resolution: bool) -> int:
    """Parse the options, load the checkpoint and evaluate the test eyes into ``<run>/<subfolder>``.

    ``resolution``: GINR from every ``EVALUATION.RESOLUTION_FACTORS``-th B-scan and no baselines;
    otherwise GINR from all B-scans plus the configured baselines (``reference_inr`` registers to
    the pretrained atlas of the trained run). Both protocols' tables are written and printed.
    """
    parser = base_parser(description)
    parser.add_argument("--checkpoint", help="trained GINR checkpoint (default: the run's registration last.ckpt)")
    args = parser.parse_args(argv)
    cfg = load_from_args(args)
    fold = load_fold(cfg)
    trained_run = run_folder(cfg, None)
    checkpoint = Path(args.checkpoint) if args.checkpoint else checkpoint_path(trained_run, REGISTRATION_STAGE)
    if args.checkpoint:  # RUN/checkpoints/registration/last.ckpt: RUN also holds the pretrained atlas
        trained_run = checkpoint.resolve().parents[2]
    factors: list[int] | None = None if resolution else [1]
    baselines: list[str] | None = [] if resolution else None
    ginr_jobs(cfg, fold, factors)
    check_unseen_test_eyes(
        trained_run, [eye.eye_id for eye in fold.eyes.test], "SETTINGS.DATA_DIR", cfg.SETTINGS.DATA_DIR, str(checkpoint)
    )
    model = load_trained(checkpoint, fold)
    run_dir = start_run(
        cfg,
        fold,
        f"{subfolder} of GINR_Atlas_base",
        args.output or str(trained_run / subfolder),
        args.overwrite,
        args.resume,
    )
    if evaluate_until_stopped(lambda: evaluate(cfg, fold, model, run_dir, factors, baselines, trained_run), run_dir):
        return EXIT_INTERRUPTED
    print(f"results in {run_dir / 'results'}")
    return 0
