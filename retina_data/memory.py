"""Whether what a config asks for can be held in memory at all, checked before anything is allocated.

A configured size that cannot be allocated (a hidden size of a million, a phantom of 10^15
voxels) would otherwise end in a ``MemoryError`` or an allocator traceback after the run
folder was written. Both trees count a network's parameters on PyTorch's ``meta`` device
(which allocates nothing) and compare the bytes training needs with the device's memory;
the phantom compares its measured bytes per voxel with the machine's RAM. torch is imported
on use only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retina_data.errors import ConfigError

TRAINING_BYTES_PER_PARAMETER = 16
"""fp32 weights, gradients and Adam's two moments."""


def machine_memory_bytes() -> int:
    """The machine's whole RAM."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def process_status_kib(field: str) -> int:
    """A memory field of ``/proc/self/status`` in KiB: ``VmRSS`` (resident now), ``VmHWM`` (peak
    resident since this process started or last ran ``exec``), ``RssAnon``, ``RssFile``; 0 where
    the platform has no ``/proc``."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB: ``VmHWM``, which starts afresh at ``exec``;
    without ``/proc``, ``getrusage``'s ``ru_maxrss``, which keeps the peak of the process that
    started this one (a child's starts from its parent's resident set at the fork)."""
    import resource

    peak = process_status_kib("VmHWM")
    return (peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def device_memory_bytes(device: Any) -> int:
    """The whole memory of ``device`` (a ``torch.device``): the GPU's, or the machine's RAM."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return machine_memory_bytes()


def check_fits_for_training(
    build: Callable[[], Any], device: Any, settings: str, step_bytes: int = 0, step: str = ""
) -> None:
    """Refuse, before any allocation, a network whose weights and optimiser state alone (and the
    ``step_bytes`` a training step holds at least) exceed the memory of ``device``.

    Args:
        build: makes the network (a ``torch.nn.Module``); called under the ``meta`` device.
        device: where it would train.
        settings: the start of the message, naming the config file and the keys that size the
            network (``"config.yaml: MODEL.HIDDEN_SIZE = 1048576, NUM_LAYERS = 4"``).
        step_bytes: a lower bound of what one step's batch holds besides the network.
        step: the words for that batch in the message (``" and steps of N points"``).

    Raises:
        ConfigError: ``<settings> give N parameters<step>, X GiB to train, more than the Y GiB of <device>``.
    """
    import torch

    with torch.device("meta"):
        network = build()
    parameters = sum(parameter.numel() for parameter in network.parameters())
    needed, available = parameters * TRAINING_BYTES_PER_PARAMETER + step_bytes, device_memory_bytes(device)
    if needed > available:
        raise ConfigError(
            f"{settings} give {parameters:,} parameters{step}, {needed / 2**30:.1f} GiB to train, "
            f"more than the {available / 2**30:.1f} GiB of {device}; expected a smaller network"
            + (" or batch" if step else "")
        )
