"""Learn a continuous retinal atlas jointly with GINR registration, then evaluate on the fold's test eyes.

Usage (from the repository root)::

    python atlas_registration/GINR_Atlas_base.py configs/atlas/fit_GINR_Atlas_base.yml [--gpus 1] [--resume]
    python -m atlas_registration.GINR_Atlas_base configs/atlas/demo_atlas.yml --overwrite
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repository root, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from atlas_registration.commandline import base_parser, load_from_args
from atlas_registration.evaluation import evaluate, ginr_jobs
from atlas_registration.pipeline import evaluate_until_stopped, load_fold, start_run, train
from retina_data.commandline import EXIT_INTERRUPTED, run_cli


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--train-only", action="store_true", help="stop after training (no evaluation)")
    args = parser.parse_args(argv)
    cfg = load_from_args(args)
    fold = load_fold(cfg)
    if not args.train_only:
        ginr_jobs(cfg, fold)
    run_dir = start_run(cfg, fold, "GINR_Atlas_base", args.output, args.overwrite, args.resume)
    model = train(cfg, fold, run_dir, args.resume)
    if not args.train_only and model.trainer.is_global_zero:
        if evaluate_until_stopped(lambda: evaluate(cfg, fold, model, run_dir), run_dir):
            return EXIT_INTERRUPTED
        print(f"results in {run_dir / 'results'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
