"""Random states captured for checkpoints: restoring them repeats every generator's draws."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from retina_data.random_state import capture_random_states, restore_random_states


def _draws() -> tuple:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_restored_states_repeat_python_numpy_and_torch_draws() -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    _draws()
    states = capture_random_states()
    first = _draws()
    _draws()
    restore_random_states(states)
    assert _draws() == first


def test_states_survive_a_weights_only_checkpoint_round_trip() -> None:
    np.random.seed(5)
    buffer = io.BytesIO()
    torch.save({"random_states": capture_random_states()}, buffer)
    expected = np.random.rand(4)
    buffer.seek(0)
    restore_random_states(torch.load(buffer, weights_only=True)["random_states"])
    assert np.array_equal(np.random.rand(4), expected)


def test_states_in_numpys_own_format_are_accepted() -> None:
    """Checkpoints of the interpolation tree written before this module stored NumPy's tuple as is."""
    np.random.seed(7)
    states = {**capture_random_states(), "numpy": np.random.get_state()}
    expected = np.random.rand(2)
    restore_random_states(states)
    assert np.array_equal(np.random.rand(2), expected)
