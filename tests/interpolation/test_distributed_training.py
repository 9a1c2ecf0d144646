"""Population training on two processes (gloo, CPU) against one process with the same global batch.

Each two-process run starts two fresh interpreters with the environment torchrun gives its
workers (RANK, LOCAL_RANK, WORLD_SIZE, ...), so :func:`~anisotropic_interpolation.distributed.launch`
joins them as Fabric joins a torchrun or SLURM launch; rank 0 saves the network and every code.
"""

from __future__ import annotations

import functools
import operator
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tiny_configs import tiny_config, tiny_trainer

from anisotropic_interpolation import training
from anisotropic_interpolation.distributed import EyeShard, launch, leave, shard
from anisotropic_interpolation.training import LAST_CHECKPOINT
from retina_data.errors import DataError
from retina_data.phantom import PhantomConfig, make_eye

CASES = {
    "paper: whole B-scans, eye_mean_square": {"TRAINING": {"SAMPLING": "bscan", "STEPS_PER_EPOCH": 6}},
    "patches in micro-batches, all_codes_squared_norm": {
        "TRAINING": {
            "SAMPLING": "patches",
            "BATCH_POINTS": 96,
            "PATCH_SIZE": 4,
            "LOSS_RECON": "Combi",
            "LATENT_CODE": {"SIZE": 8, "REG_TYPE": "all_codes_squared_norm", "REG_WEIGHT": 0.5},
        },
        "SETTINGS": {"MICRO_BATCH_POINTS": 32},
    },
}
"""Two step kinds: the reference's one whole B-scan per step (it lies in one process; the other
adds nothing) and patches over all eyes (both processes add their eyes' patches), with the
penalty over every code, which each process holds a part of."""


def _eyes() -> list:
    """Five phantom eyes ``[32, 16, 16]`` (an odd count: the shards are 3 and 2 eyes)."""
    cfg = PhantomConfig(n_subjects=3, shape=(32, 16, 16))
    return [make_eye(cfg, subject, laterality) for subject in range(3) for laterality in ("OD", "OS")][:5]


def _config(case: str):
    """The tiny config of ``case``: 4 epochs (the learning-rate schedule's span), a checkpoint every 2."""
    sections = {section: dict(values) for section, values in CASES[case].items()}
    sections["TRAINING"].update(TOTAL_EPOCHS=4, CHECKPOINT_EVERY=2, EPOCHS_TIL_SUMMARY=1)
    sections.setdefault("SETTINGS", {})["COMPILE"] = False
    return tiny_config(**sections)


def _join(rank: int, world: int, port: int):
    """Join a torchrun-like launch as process ``rank`` of ``world`` (the environment torchrun gives
    its workers), on one CPU thread."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        GROUP_RANK="0",
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    return launch(-1, world, 1)


def _worker(rank: int, world: int, port: int, case: str, epochs: int, folder: str, other_start: bool = False) -> None:
    """One process of a torchrun-like launch: train ``epochs`` epochs on its shard of the eyes
    (``other_start``: processes after the first build their network from another seed)."""
    fabric = _join(rank, world, port)
    config = _config(case)
    trainer = tiny_trainer(
        config,
        _eyes(),
        checkpoint_dir=Path(folder) / "checkpoints",
        shard=EyeShard.of(fabric, 5),
        network_seed=rank if other_start else 0,
    )
    trainer.epoch_limit = epochs
    trainer.train()
    codes = trainer.all_codes()
    if fabric.global_rank == 0:
        torch.save({"network": trainer.network.state_dict(), "codes": codes}, Path(folder) / "result.pt")
    leave(fabric)


def _failing_write_worker(rank: int, world: int, port: int, folder: str) -> None:
    """A process of a run whose first process cannot write its checkpoint (a full disk, say): each
    process records the error it stopped with."""
    fabric = _join(rank, world, port)

    def full_disk(path, *_args, **_kwargs):
        raise DataError(f"{path}: writing the checkpoint failed (No space left on device; disk full?)")

    training.save_checkpoint = full_disk
    config = _config("paper: whole B-scans, eye_mean_square")
    trainer = tiny_trainer(config, _eyes(), checkpoint_dir=Path(folder) / "checkpoints", shard=EyeShard.of(fabric, 5))
    try:
        trainer.train()
    except DataError as error:
        (Path(folder) / f"rank{rank}.txt").write_text(str(error))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(case: str, epochs: int, folder: Path, other_start: bool = False) -> dict:
    mp.start_processes(
        _worker, args=(2, _free_port(), case, epochs, str(folder), other_start), nprocs=2, start_method="spawn"
    )
    return torch.load(folder / "result.pt", weights_only=False)


def _assert_same_weights(network: dict, expected: dict, codes: torch.Tensor, expected_codes: torch.Tensor) -> None:
    assert network.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(network[name], value, rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(codes, expected_codes, rtol=0, atol=1e-6)


def test_shards_are_contiguous_blocks_differing_by_at_most_one() -> None:
    assert [shard(5, rank, 2) for rank in range(2)] == [[0, 1, 2], [3, 4]]
    assert [shard(7, rank, 3) for rank in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [shard(1, rank, 2) for rank in range(2)] == [[0], []]
    assert functools.reduce(operator.iadd, (shard(10, rank, 4) for rank in range(4)), []) == list(range(10))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_train_the_network_and_codes_of_one_process_with_the_same_batch(case, tmp_path) -> None:
    config = _config(case)
    one = tiny_trainer(config, _eyes())
    one.train()
    two = _two_processes(case, 4, tmp_path)
    initial = tiny_trainer(config, _eyes())
    assert not torch.allclose(one.codes, initial.codes, atol=1e-4)  # the codes moved: the check means something
    _assert_same_weights(two["network"], one.network.state_dict(), two["codes"], one.codes.detach())


@pytest.mark.slow
def test_every_process_starts_from_the_first_processs_network(tmp_path) -> None:
    """A process that drew its starting weights differently (another seed) still trains the first
    process's network: the weights are broadcast before the first step, so no process drifts apart."""
    case = "paper: whole B-scans, eye_mean_square"
    one = tiny_trainer(_config(case), _eyes())
    one.train()
    two = _two_processes(case, 4, tmp_path, other_start=True)
    _assert_same_weights(two["network"], one.network.state_dict(), two["codes"], one.codes.detach())


@pytest.mark.slow
def test_a_checkpoint_rank_0_cannot_write_stops_every_process(tmp_path) -> None:
    """Rank 0's failed write reaches the other process too (before: it waited at the next collective,
    under NCCL until the process-group timeout)."""
    context = mp.start_processes(
        _failing_write_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn", join=False
    )
    started = time.monotonic()
    while not context.join(timeout=5):
        if time.monotonic() - started > 120:
            for process in context.processes:
                process.kill()
            pytest.fail("a process still waits two minutes after rank 0's checkpoint write failed")
    assert "No space left on device" in (tmp_path / "rank0.txt").read_text()
    assert "the first process of the run could not write it" in (tmp_path / "rank1.txt").read_text()


@pytest.mark.slow
def test_a_checkpoint_of_two_processes_holds_every_code_and_resumes_in_one(tmp_path) -> None:
    """Checkpoints hold all five codes and their Adam moments in global eye order, so a run of
    two processes continues in one (re-sharded) and ends as one process ends."""
    case = "patches in micro-batches, all_codes_squared_norm"
    config = _config(case)
    _two_processes(case, 2, tmp_path)
    state = torch.load(tmp_path / "checkpoints" / LAST_CHECKPOINT, weights_only=False)
    assert state["epoch"] == 2 and state["codes"].shape == (5, 8) and state["best"]["codes"].shape == (5, 8)
    moments = state["optimizer"]["state"][len(state["optimizer"]["param_groups"][0]["params"])]
    assert moments["exp_avg"].shape == moments["exp_avg_sq"].shape == (5, 8)
    assert bool((moments["exp_avg_sq"] > 0).all())  # every eye's code was updated, in both processes

    resumed = tiny_trainer(config, _eyes(), checkpoint_dir=tmp_path / "checkpoints")
    resumed.train(resume=True)
    straight = tiny_trainer(config, _eyes())
    straight.train()
    _assert_same_weights(
        resumed.network.state_dict(), straight.network.state_dict(), resumed.codes.detach(), straight.codes.detach()
    )
