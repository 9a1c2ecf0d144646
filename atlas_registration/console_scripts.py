"""Console scripts of the atlas tree (``pyproject.toml``'s ``[project.scripts]``).

Each runs an entry script's ``main`` through :func:`retina_data.commandline.run_cli`, exactly as
``python atlas_registration/<script>.py`` does; the entry module is imported only when its
command is called.
"""

from __future__ import annotations

from importlib import import_module
from typing import NoReturn

from retina_data.commandline import run_cli


def _run(module: str) -> NoReturn:
    run_cli(import_module(f"atlas_registration.{module}").main)


def ginr_atlas_base() -> NoReturn:
    """``resa-atlas CONFIG ...``"""
    _run("GINR_Atlas_base")


def ginr_atlas_base_inference() -> NoReturn:
    """``resa-atlas-inference CONFIG --checkpoint ...``"""
    _run("GINR_Atlas_base_inference")


def ginr_atlas_resolution_inference() -> NoReturn:
    """``resa-atlas-resolution CONFIG --checkpoint ...``"""
    _run("GINR_Atlas_resolution_inference")


def pretrain_atlas() -> NoReturn:
    """``resa-pretrain-atlas CONFIG --output DIR``"""
    _run("pretrain_atlas")
