"""Launching and connecting the processes of one run with Lightning Fabric.

Fabric only starts the processes (or joins those torchrun / SLURM started), picks each one's
device and opens the process group; our own training step, micro-batching and compile stay as
they are. Work is split by :func:`shard`: each process takes one contiguous block of items
(eyes), and the blocks differ in size by at most one.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from lightning.fabric import Fabric
from torch import Tensor

from retina_data.errors import ConfigError


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--devices N`` (processes per node, default 1) and ``--num-nodes M`` (default 1)."""
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="processes (one device each) per node; under torchrun or SLURM: the tasks per node",
    )
    parser.add_argument(
        "--num-nodes",
        dest="num_nodes",
        type=int,
        default=1,
        help="nodes of the run; under torchrun or SLURM: the number of nodes they start",
    )


def gpu_indices(gpu: int | None, devices: int = 1) -> list[int]:
    """The CUDA devices ``--gpu`` asks for: ``gpu..gpu+devices-1`` for ``gpu >= 0`` (refused
    without CUDA, so that a run never silently falls back to the CPU, or beyond the GPUs present),
    none (the CPU) for ``gpu < 0``; ``None`` (no ``--gpu``): from GPU 0 if there is one, else none."""
    if gpu is None:
        gpu = 0 if torch.cuda.is_available() else -1
    if gpu < 0:
        return []
    if not torch.cuda.is_available():
        raise ConfigError(
            f"--gpu {gpu}: no CUDA device present (torch.cuda.is_available() is false); use --gpu -1 for the CPU"
        )
    if gpu + devices > torch.cuda.device_count():
        asked = f"--gpu {gpu}" if devices == 1 else f"--gpu {gpu} --devices {devices}"
        count = torch.cuda.device_count()
        raise ConfigError(f"{asked}: only {count} CUDA device(s) present (GPUs 0..{count - 1})")
    return list(range(gpu, gpu + devices))


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
    gpus = gpu_indices(gpu, devices)
    accelerator, device_ids = ("cuda", gpus) if gpus else ("cpu", devices)  # GPUs by index, or a count of CPU processes
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


@dataclass(frozen=True)
class EyeShard:
    """The training eyes of this process among ``total`` (:func:`shard` of ``rank`` in ``world``),
    and the collectives the processes of a run exchange (no-ops in one process).

    Every process draws the same global batches; it evaluates the images of its own eyes,
    holds only their latent codes, and the sums of the network gradients and of the losses
    are exchanged, so the update equals that of one process with the whole batch.
    """

    total: int
    rank: int = 0
    world: int = 1

    @classmethod
    def of(cls, fabric: Fabric | None, total: int) -> EyeShard:
        """This process's eyes of ``total`` in ``fabric``'s run (``None``: one process holds them all)."""
        if fabric is None:
            return cls(total)
        return cls(total, fabric.global_rank, fabric.world_size)

    @property
    def indices(self) -> list[int]:
        """Global indices of this process's eyes (contiguous, in order)."""
        return shard(self.total, self.rank, self.world)

    @property
    def first(self) -> int:
        """Global index of this process's first eye."""
        return shard(self.total, self.rank, self.world)[0] if self.count else 0

    @property
    def count(self) -> int:
        return len(shard(self.total, self.rank, self.world))

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and reports."""
        return self.rank == 0

    def sum_(self, tensor: Tensor) -> Tensor:
        """``tensor`` replaced in place by its sum over the processes (returned)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds in any process (every process gets the same answer)."""
        if not self.distributed:
            return flag
        return bool(self.sum_(torch.tensor([float(flag)], device=self._device())).item() > 0)

    def take_rows(self, full: Tensor) -> Tensor:
        """This process's rows ``[count, ...]`` of ``full [total, ...]`` (in global eye order)."""
        if full.shape[0] != self.total:
            raise ValueError(f"expected {self.total} rows, got {tuple(full.shape)}")
        return full[self.first : self.first + self.count]

    def gather_rows(self, local: Tensor) -> Tensor:
        """Every process's rows ``local [count, ...]`` stacked in global eye order: ``[total, ...]``
        (a collective: every process must call it)."""
        if not self.distributed:
            return local
        largest = len(shard(self.total, 0, self.world))
        padded = local.new_zeros((largest, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[: len(shard(self.total, rank, self.world))] for rank, part in enumerate(parts)])

    def broadcast_(self, tensors: Iterable[Tensor]) -> None:
        """Every tensor of ``tensors`` replaced in place by the first process's (one starting point
        for all, even where a process drew its random numbers differently before)."""
        if self.distributed:
            for tensor in tensors:
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier()

    def _device(self) -> torch.device:
        return (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )


def leave(fabric: Fabric | None) -> None:
    """End this process's part in the run: wait for the others, then close the process group
    (so that no process exits while another still talks to it); nothing for one process."""
    if fabric is not None and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
