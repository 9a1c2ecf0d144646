"""Generalizable INR: train on the fold's training eyes, fit and densify its test eyes, evaluate.

Usage (from the repository root)::

    python anisotropic_interpolation/train_test_geninr.py configs/interpolation/geninr_config.yaml --gpu 0
    python -m anisotropic_interpolation.train_test_geninr CONFIG --gpu -1 --epochs 10 --set TRAINING.SEED=3
"""

from __future__ import annotations

from collections.abc import Sequence

from anisotropic_interpolation.pipeline import experiment_parser, prepare_experiment, run_geninr
from retina_data.commandline import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    return run_geninr(prepare_experiment(args, "train_test_geninr"))


if __name__ == "__main__":
    run_cli(main)
