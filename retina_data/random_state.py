"""The global random states a training run draws from, for checkpoints that resume exactly.

Both script trees store these in their checkpoints: Python's ``random``, NumPy's legacy
global generator, torch's CPU generator and, when present, every CUDA generator. NumPy's
state is kept as plain types and a tensor, so a checkpoint holding it still loads with
``torch.load(..., weights_only=True)``. torch is imported on use only: the rest of
``retina_data`` does not need it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np


def capture_random_states() -> dict[str, Any]:
    """``{"python", "numpy", "torch"[, "cuda"]}``: the current global random states."""
    import torch

    numpy_state = np.random.get_state(legacy=True)
    # the global generator is always MT19937, whose legacy state is this tuple (a dict only for others)
    assert isinstance(numpy_state, tuple)
    name, keys, position, has_gauss, gauss = numpy_state
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Undo :func:`capture_random_states` (CUDA states only where CUDA is available)."""
    import torch

    random.setstate(states["python"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    keys = keys.cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)  # loaded onto a GPU too
    np.random.set_state((name, keys.astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])
