"""Checkpoints written atomically (``last.pt`` rotated: the one before stays as ``last.prev.pt``),
read with one-line errors and checked against the network they are loaded into (both shared
with the atlas tree: :mod:`retina_data.checkpoints`); random-number states; and clean stops on
SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from retina_data.errors import DataError
from retina_data.files import previous_path
from retina_data.random_state import capture_random_states, restore_random_states


def resume_checkpoint(checkpoint_dir: Path, last: str, best: str) -> Path | None:
    """The checkpoint a ``--resume`` continues from: ``checkpoint_dir/last``, or ``None`` when the
    folder holds no checkpoint at all (the run stopped before its first one: it starts again).

    A missing ``last`` beside an existing ``best`` (or the rotated ``last.prev``) is refused
    with both named: ``best`` holds the best weights only (no optimiser state, no epoch
    counter), so continuing from it silently would restart the schedule and overwrite the log.
    """
    path = checkpoint_dir / last
    if path.is_file():
        return path
    previous = previous_path(path)
    if previous.is_file():
        raise DataError(
            f"{path}: not found, but {previous.name} (the checkpoint before it) is there; rename it to "
            f"{last} to continue from it with --resume, or pass --overwrite to train again"
        )
    if (checkpoint_dir / best).is_file():
        raise DataError(
            f"{path}: not found, but {checkpoint_dir / best} is there: it holds the best weights only "
            "(no optimiser state or epoch), so the run cannot continue exactly; restore "
            f"{last} from a backup, score the best weights with --eval where the script has it, "
            "or pass --overwrite to train again"
        )
    return None


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """States of every random source a run draws from (Python, NumPy, torch, CUDA, the sampler)."""
    return {**capture_random_states(), "sampler": generator.get_state()}


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    """Undo :func:`rng_states`."""
    restore_random_states(states)
    generator.set_state(states["sampler"].cpu())


class StopFlag:
    """Set by SIGTERM/SIGINT while :func:`stop_on_signals` is active; loops poll ``requested``."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def request(self, signum: int, _frame: Any = None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """Turn SIGTERM and SIGINT into a flag for the duration of the block (main thread only)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {sig: signal.signal(sig, flag.request) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
