"""Checkpoints written atomically (``last.pt`` rotated: the one before stays as ``last.prev.pt``),
read with one-line errors, checked against the network they are loaded into; random-number
states; and clean stops on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from retina_data.errors import DataError
from retina_data.files import atomic_save, previous_path
from retina_data.random_state import capture_random_states, restore_random_states


def save_checkpoint(path: str | Path, state: dict[str, Any], *, keep_previous: bool = False) -> Path:
    """``torch.save(state)`` under a temporary name, renamed into place; with ``keep_previous``
    the checkpoint it replaces stays beside it (``last.prev.pt``, :func:`retina_data.files.previous_path`)."""
    return atomic_save(path, lambda tmp: torch.save(state, tmp), keep_previous=keep_previous)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` (a mapping), tensors mapped to ``device``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - unpickling a foreign or damaged file can raise anything
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read checkpoint (truncated, corrupt or not a PyTorch file?): "
                        f"{reason}") from exc
    if not isinstance(state, dict):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a checkpoint of this toolkit")
    return state


def require_keys(state: dict[str, Any], keys: tuple[str, ...], path: Path, what: str) -> None:
    """Refuse a checkpoint that lacks ``keys`` (another program's, or another kind), naming what it holds."""
    missing = [key for key in keys if key not in state]
    if missing:
        held = ", ".join(sorted(str(key) for key in state)[:6]) or "nothing"
        hint = " (a Lightning checkpoint of the atlas tree?)" if "state_dict" in state else ""
        raise DataError(f"{path}: not {what}: it lacks {', '.join(missing)} and holds {held}{hint}")


def check_state_matches(network: torch.nn.Module, weights: Any, path: Path) -> None:
    """Refuse weights whose names or shapes differ from ``network``'s (a checkpoint of another
    architecture, e.g. saved before a config key changed the layers), naming the first differences."""
    if not isinstance(weights, dict):
        raise DataError(f"{path}: holds no network weights")
    expected = {name: tuple(value.shape) for name, value in network.state_dict().items()}
    stored = {name: tuple(value.shape) for name, value in weights.items() if isinstance(value, torch.Tensor)}
    problems = [f"{name} {stored[name]} here, {shape} in the config" for name, shape in expected.items()
                if name in stored and stored[name] != shape]
    problems += [f"{name} missing" for name in expected if name not in stored]
    problems += [f"{name} unexpected" for name in stored if name not in expected]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise DataError(f"{path}: the checkpoint does not match the network of the config ({shown}); it was "
                        "saved with other MODEL/POS_ENCODING settings or by another version")


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
        raise DataError(f"{path}: not found, but {previous.name} (the checkpoint before it) is there; rename it to "
                        f"{last} to continue from it with --resume, or pass --overwrite to train again")
    if (checkpoint_dir / best).is_file():
        raise DataError(f"{path}: not found, but {checkpoint_dir / best} is there: it holds the best weights only "
                        "(no optimiser state or epoch), so the run cannot continue exactly; restore "
                        f"{last} from a backup, score the best weights with --eval where the script has it, "
                        "or pass --overwrite to train again")
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
def interrupt_on_sigterm() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`KeyboardInterrupt` as Ctrl-C does (main thread
    only), so work outside a training loop (latent fits, predictions, scoring) stops with the
    same notice and exit code as an interrupted training; :func:`stop_on_signals` inside it
    takes over while a training loop runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
