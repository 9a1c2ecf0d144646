"""Generalizable INR: train on the fold's training eyes, fit and densify its test eyes, evaluate.

Usage (from the repository root)::

    python anisotropic_interpolation/train_test_geninr.py configs/interpolation/geninr_config.yaml --gpu 0
    python -m anisotropic_interpolation.train_test_geninr CONFIG --gpu -1 --epochs 10 --set TRAINING.SEED=3
    python -m anisotropic_interpolation.train_test_geninr --eval runs/RUN_FOLDER --gpu 0 --overwrite
    python anisotropic_interpolation/train_test_geninr.py configs/interpolation/geninr_config.yaml --result_dir runs \\
        --result_note wire --torch_compile

``--eval RUN`` scores a trained run again without training (its own config, ``--set`` for TEST,
SETTINGS and EVALUATION keys); ``--result_note`` is appended to the run folder's name and kept in
``run_info.json``. Both metric sets are written: ``evaluation/summary.md`` (ours) and
``evaluation/summary_reference.md`` (the paper's).
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
