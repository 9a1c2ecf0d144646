"""Launching and connecting the processes of one run with Lightning Fabric.

Fabric only starts the processes (or joins those torchrun / SLURM started), picks each one's
device and opens the process group; our own training step, micro-batching and compile stay as
they are. Work is split by :func:`shard`: each process takes one contiguous block of items
(eyes), and the blocks differ in size by at most one.
"""

from __future__ import annotations

import argparse

import torch
from lightning.fabric import Fabric

from retina_data.errors import ConfigError


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--devices N`` (processes per node, default 1) and ``--num-nodes M`` (default 1)."""
    parser.add_argument("--devices", type=int, default=1,
                        help="processes (one device each) per node; under torchrun or SLURM: the tasks per node")
    parser.add_argument("--num-nodes", dest="num_nodes", type=int, default=1,
                        help="nodes of the run; under torchrun or SLURM: the number of nodes they start")


def launch(gpu: int | None, devices: int, num_nodes: int) -> Fabric:
    """Start (or join) the processes of a run and return this process's :class:`Fabric`.

    ``gpu`` follows ``--gpu``: ``None`` uses CUDA when present (GPUs 0..devices-1), else the CPU;
    ``gpu < 0`` the CPU; ``gpu >= 0`` the GPUs ``gpu..gpu+devices-1`` (refused without CUDA or
    beyond the GPUs present). With ``devices * num_nodes > 1`` the strategy is DDP (NCCL on CUDA,
    gloo on the CPU); Fabric starts the other processes of this node itself, or joins those that
    torchrun or SLURM ``srun`` started (their world size must equal ``devices * num_nodes``).
    """
    if devices < 1:
        raise ConfigError(f"--devices {devices}: expected at least 1")
    if num_nodes < 1:
        raise ConfigError(f"--num-nodes {num_nodes}: expected at least 1")
    if gpu is None:
        gpu = 0 if torch.cuda.is_available() else -1
    if gpu >= 0:
        if not torch.cuda.is_available():
            raise ConfigError(f"--gpu {gpu}: no CUDA device present (torch.cuda.is_available() is false); "
                              "use --gpu -1 for the CPU")
        if gpu + devices > torch.cuda.device_count():
            raise ConfigError(f"--gpu {gpu} --devices {devices}: only {torch.cuda.device_count()} CUDA device(s) "
                              f"present, expected GPUs {gpu}..{gpu + devices - 1}")
        accelerator, device_ids = "cuda", list(range(gpu, gpu + devices))
    else:
        accelerator, device_ids = "cpu", devices
    strategy = "ddp" if devices * num_nodes > 1 else "auto"
    try:
        fabric = Fabric(accelerator=accelerator, devices=device_ids, num_nodes=num_nodes, strategy=strategy)
    except ValueError as error:
        raise ConfigError(f"--devices {devices} --num-nodes {num_nodes}: {error}") from error
    fabric.launch()
    if fabric.device.type == "cuda":
        torch.cuda.set_device(fabric.device)
    return fabric


def shard(count: int, rank: int, world: int) -> list[int]:
    """The indices of the items of process ``rank`` out of ``world`` among ``count`` items.

    Contiguous blocks in order; the first ``count % world`` processes take one item more, so
    ``shard(5, r, 2)`` is ``[0, 1, 2]`` and ``[3, 4]``. A process may get none (count < world).
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of world {world}: expected 0 <= rank < world")
    size, extra = divmod(count, world)
    start = rank * size + min(rank, extra)
    return list(range(start, start + size + (1 if rank < extra else 0)))
