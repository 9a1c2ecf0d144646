"""The training loggers of both trees: CSV always, TensorBoard and wandb when installed and asked for.

One config key, ``LOGGERS`` (the atlas tree's ``RUNTIME.LOGGERS``, the interpolation tree's
``SETTINGS.LOGGERS``), lists the loggers a run writes to besides its own files. Every run
that logs gets a Lightning ``CSVLogger`` whatever the list says (``csv`` may be listed, or
not); ``tensorboard`` adds a ``TensorBoardLogger`` and ``wandb`` a ``WandbLogger``
(``WANDB_MODE=offline`` works as usual). Under a run's ``save_dir``::

    logs/<name>/version_<k>/metrics.csv        the CSV logger, a new version per (re)start
    tensorboard/<name>/version_<k>/            TensorBoard's event files
    wandb/                                     wandb's local files

A logger that is asked for but not installed is left out with one notice per process naming
the key and the extra that installs it (``pip install 'resa-oct[tensorboard]'``): logging
observes a run and never changes what it computes, and the shipped paper configs ask for
TensorBoard, so a base install runs them as they are rather than refusing them.

The atlas tree hands :func:`build_loggers` to its Lightning Trainers; the interpolation tree,
which has its own training loop, records its per-epoch summary rows through
:func:`log_summary`. Lightning is imported only when loggers are built.
"""

from __future__ import annotations

import importlib.util
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from retina_data.commandline import notice

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

LoggerName = Literal["csv", "tensorboard", "wandb"]
"""A value of a ``LOGGERS`` list."""
OPTIONAL_LOGGERS: dict[str, tuple[str, ...]] = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
"""The loggers that need a package beyond the base install: the modules that provide each one
(any of them); each has an extra of the same name in ``pyproject.toml``."""
PACKAGE = "resa-oct"

_noticed: set[tuple[str, str]] = set()
_owned: weakref.WeakKeyDictionary[object, list[Logger]] = weakref.WeakKeyDictionary()


def installed(logger: str) -> bool:
    """Whether the package of an optional logger is importable (``csv`` always is)."""
    modules = OPTIONAL_LOGGERS.get(logger)
    return modules is None or any(importlib.util.find_spec(module) is not None for module in modules)


def available_loggers(names: Sequence[str], key: str) -> list[str]:
    """The loggers a run writes to: ``csv`` first, then those of ``names`` that are installed;
    one notice per process for each one asked for under ``key`` but not installed."""
    chosen = ["csv"]
    for logger in dict.fromkeys(names):
        if logger == "csv":
            continue
        if installed(logger):
            chosen.append(logger)
        elif (key, logger) not in _noticed:
            _noticed.add((key, logger))
            notice(
                f"{key} asks for {logger}, which is not installed; logging to CSV without it "
                f"(pip install '{PACKAGE}[{logger}]')"
            )
    return chosen


def build_loggers(
    names: Sequence[str], save_dir: Path, name: str, *, key: str, project: str | None = None
) -> list[Logger]:
    """The Lightning loggers of ``names`` (see the module docstring) under ``save_dir``.

    Args:
        names: the ``LOGGERS`` list of the config.
        save_dir: the run (or stage) folder the logs go under.
        name: the subfolder of the CSV and TensorBoard logs (a training stage; ``""``: none).
        key: the config key of ``names``, for the notice of a missing logger.
        project: the wandb project (default ``name``); ``name`` is then wandb's run name.
    """
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Logger] = []
    for logger in available_loggers(names, key):
        if logger == "csv":
            loggers.append(CSVLogger(save_dir / "logs", name=name))
        elif logger == "tensorboard":
            loggers.append(TensorBoardLogger(save_dir / "tensorboard", name=name))
        elif logger == "wandb":
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(project=project or name, name=name if project else None, save_dir=str(save_dir)))
    return loggers


def log_summary(
    owner: object, row: Mapping[str, float], step: int, save_dir: Path, names: Sequence[str], *, key: str, project: str
) -> None:
    """Record one summary ``row`` (metric name -> value) at ``step`` through the loggers of ``owner``
    (a training loop), written to disk at once.

    The loggers are built under ``save_dir`` on ``owner``'s first row and live as long as
    ``owner``, so each training (and each restart of one) gets its own ``version_<k>``.
    """
    loggers = _owned.get(owner)
    if loggers is None:
        loggers = _owned[owner] = build_loggers(names, save_dir, "", key=key, project=project)
    for logger in loggers:
        logger.log_metrics(dict(row), step=step)
        logger.save()
