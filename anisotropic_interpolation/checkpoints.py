"""Checkpoints written atomically, random-number states, and clean stops on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from retina_data.errors import DataError
from retina_data.files import atomic_save
from retina_data.random_state import capture_random_states, restore_random_states


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save(state)`` under a temporary name, renamed into place."""
    return atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, tensors mapped to ``device``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise DataError(f"{path}: cannot read checkpoint (truncated or corrupt?): {exc}") from exc


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
