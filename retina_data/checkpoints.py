"""Reading checkpoints of either tree with one-line errors, and checking them against the network
they are loaded into (before anything is restored or written).

Both trees save ``torch.save`` mappings: the interpolation tree its own (``network``,
``optimizer``, ``epoch``, ... and ``model.pt`` with ``config``, ``inputs``, ``codes``), the atlas
tree Lightning checkpoints (``state_dict``, ``hyper_parameters``, ``optimizer_states``,
``epoch``). Giving one tree's file to the other, or a damaged or foreign file, is refused by
:func:`load_checkpoint` and :func:`require_keys` with a message that says what the file is.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from retina_data.errors import DataError
from retina_data.files import atomic_path

KIND_HINTS = (
    ("state_dict", " (a Lightning checkpoint of the atlas tree?)"),
    ("network", " (a checkpoint of the interpolation tree?)"),
)
"""A key that tells which tree wrote a checkpoint, and the hint a refusal then adds."""


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint (a mapping) read with ``torch.load``, tensors mapped to ``device``.

    Raises:
        DataError: the file is missing, cannot be unpickled (truncated, corrupt, not a PyTorch
            file) or holds something other than a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: cannot read checkpoint (truncated, corrupt or not a PyTorch file?): {reason}"
        ) from exc
    if not isinstance(state, dict):
        raise DataError(f"{path}: holds a {type(state).__name__}, not a checkpoint of this toolkit")
    return state


def save_checkpoint(path: str | Path, state: dict[str, Any], *, keep_previous: bool = False) -> Path:
    """``torch.save(state)`` under a temporary name, renamed into place; with ``keep_previous``
    the checkpoint it replaces stays beside it (``last.prev.pt``, :func:`retina_data.files.previous_path`).

    A write that fails (a full disk: torch raises a ``RuntimeError`` of its zip writer) leaves the
    old checkpoint as it was and raises an ``OSError`` naming ``path``, which the command line turns
    into its one line.
    """
    path = Path(path)
    with atomic_path(path, keep_previous=keep_previous) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OSError(
                errno.EIO,
                f"writing the checkpoint failed ({reason}; disk full?); any earlier one of this name is kept",
                str(path),
            ) from exc
    return path


def require_keys(state: dict[str, Any], keys: tuple[str, ...], path: Path, what: str) -> None:
    """Refuse a checkpoint that lacks ``keys`` (another program's, or another kind), naming what it
    holds and, where its keys tell, which tree wrote it (:data:`KIND_HINTS`)."""
    missing = [key for key in keys if key not in state]
    if missing:
        held = ", ".join(sorted(str(key) for key in state)[:6]) or "nothing"
        hint = next((hint for key, hint in KIND_HINTS if key in state and key not in keys), "")
        raise DataError(f"{path}: not {what}: it lacks {', '.join(missing)} and holds {held}{hint}")


def check_state_matches(
    network: torch.nn.Module, weights: Any, path: Path, settings: str = "MODEL/POS_ENCODING"
) -> None:
    """Refuse weights whose names or shapes differ from ``network``'s (a checkpoint of another
    architecture, e.g. saved before a config key changed the layers), naming the first differences
    and the config sections (``settings``) that shape the network."""
    if not isinstance(weights, dict):
        raise DataError(f"{path}: holds no network weights")
    expected = {name: tuple(value.shape) for name, value in network.state_dict().items()}
    stored = {name: tuple(value.shape) for name, value in weights.items() if isinstance(value, torch.Tensor)}
    problems = [
        f"{name} {stored[name]} here, {shape} in the config"
        for name, shape in expected.items()
        if name in stored and stored[name] != shape
    ]
    problems += [f"{name} missing" for name in expected if name not in stored]
    problems += [f"{name} unexpected" for name in stored if name not in expected]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise DataError(
            f"{path}: the checkpoint does not match the network of the config ({shown}); it was "
            f"saved with other {settings} settings or by another version"
        )
