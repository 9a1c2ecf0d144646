"""Single-subject INR: fit one network per test eye on its sparse B-scans, densify, evaluate.

Usage (from the repository root)::

    python anisotropic_interpolation/train_test_singleinr.py configs/interpolation/singleinr_config.yaml --gpu 0
    python -m anisotropic_interpolation.train_test_singleinr CONFIG --gpu -1 --epochs 10
"""

from __future__ import annotations

from collections.abc import Sequence

from anisotropic_interpolation.pipeline import experiment_parser, prepare_experiment, run_singleinr
from retina_data.commandline import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    args = experiment_parser(__doc__.splitlines()[0]).parse_args(argv)
    return run_singleinr(prepare_experiment(args, "train_test_singleinr"))


if __name__ == "__main__":
    run_cli(main)
