"""Console scripts of the interpolation tree (``pyproject.toml``'s ``[project.scripts]``).

Each runs an entry script's ``main`` through :func:`retina_data.commandline.run_cli`, exactly as
``python anisotropic_interpolation/<script>.py`` does; the entry module is imported only when
its command is called, so every command starts as fast as its own imports allow.
"""

from __future__ import annotations

from importlib import import_module
from typing import NoReturn

from retina_data.commandline import run_cli


def _run(module: str) -> NoReturn:
    run_cli(import_module(f"anisotropic_interpolation.{module}").main)


def train_test_geninr() -> NoReturn:
    """``resa-geninr CONFIG ...``"""
    _run("train_test_geninr")


def train_test_singleinr() -> NoReturn:
    """``resa-singleinr CONFIG ...``"""
    _run("train_test_singleinr")


def predict() -> NoReturn:
    """``resa-predict RUN DATA EYE ...``"""
    _run("predict")


def densify_cohort() -> NoReturn:
    """``resa-densify-cohort RUN DATA... --output OUT ...``"""
    _run("densify_cohort")
