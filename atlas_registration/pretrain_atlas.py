"""Build the median atlas of a fold and pretrain the atlas INR on it (the first step on its own).

The result, ``<run>/checkpoints/pretrain_atlas/last.ckpt``, is what ``ATLAS_MODEL.PATH``
takes in a later registration run::

    python atlas_registration/pretrain_atlas.py configs/atlas/fit_GINR_Atlas_base.yml --output runs/atlas_f2
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repository root, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from atlas_registration.commandline import base_parser, load_from_args
from atlas_registration.pipeline import build_atlas, evaluate_until_stopped, load_fold, start_run
from atlas_registration.reporting import write_atlas_volumes
from atlas_registration.trainers import checkpoint_path
from atlas_registration.training import PRETRAIN_STAGE
from retina_data.commandline import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    args = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = load_from_args(args)
    fold = load_fold(cfg)
    run_dir = start_run(cfg, fold, "pretrain_atlas", args.output, args.overwrite, args.resume)
    module = build_atlas(cfg, fold, run_dir, args.resume)
    shape = fold.eyes.train[0].shape
    code = evaluate_until_stopped(
        lambda: write_atlas_volumes(
            module.atlas,
            shape,
            fold.extent_mm,
            run_dir / "atlas" / "inr_{}x{}x{}".format(*shape),
            cfg.EVALUATION.CHUNK_POINTS,
            fold.mapping.names,
            cfg.EVALUATION.FIGURES,
        ),
        run_dir,
    )
    print(f"atlas INR: {checkpoint_path(run_dir, PRETRAIN_STAGE)}")
    return code


if __name__ == "__main__":
    run_cli(main)
