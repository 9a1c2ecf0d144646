"""Lightning Trainers for this tree: devices from the config/CLI, safe checkpoints, quiet per-eye fits.

Checkpoints are written through :func:`retina_data.files.atomic_path` (temporary file in
the checkpoint folder, then a rename), and also when the run is stopped by SIGTERM or
SIGINT (Lightning turns both into an exception that reaches ``on_exception``).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from atlas_registration.config import Runtime
from retina_data.commandline import EXIT_INTERRUPTED
from retina_data.files import atomic_path
from retina_data.precision import native_bf16
from retina_data.random_state import capture_random_states, restore_random_states

LAST_CHECKPOINT = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the checkpoint, renamed into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class CheckpointOnInterrupt(Callback):
    """Writes ``last.ckpt`` when training stops on an exception (SIGTERM, SIGINT/Ctrl-C, errors)."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.path = Path(checkpoint_dir) / LAST_CHECKPOINT
        self.interrupted = False

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path)
        stop = ("SIGTERM" if isinstance(exception, SIGTERMException)  # a SystemExit that would exit 0, silently
                else "Ctrl-C (SIGINT)" if isinstance(exception, KeyboardInterrupt) else None)
        if stop is not None:
            self.interrupted = True
            print(f"notice: stopped by {stop} in epoch {trainer.current_epoch}; the checkpoint is {self.path}; "
                  "continue with --resume", file=sys.stderr)
        if isinstance(exception, SIGTERMException):
            exception.code = EXIT_INTERRUPTED


def fit(trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
    """``trainer.fit``; a run stopped by Ctrl-C, which Lightning ends with exit code 1 after the
    checkpoint of :class:`CheckpointOnInterrupt`, ends with ``EXIT_INTERRUPTED`` instead."""
    try:
        trainer.fit(*args, **kwargs)
    except SystemExit:
        if any(isinstance(callback, CheckpointOnInterrupt) and callback.interrupted for callback in trainer.callbacks):
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise


class RandomStateCheckpoint(Callback):
    """Stores the Python, NumPy, torch (and CUDA) random states in each checkpoint and restores
    them on ``--resume``, so patch offsets and shuffling continue where the run stopped."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["random_states"] = capture_random_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("random_states")
        if states is not None:  # None: a checkpoint written before random states were stored
            restore_random_states(states)


def uses_cuda(runtime: Runtime) -> bool:
    """Whether the runtime settings put the run on a CUDA GPU."""
    if runtime.ACCELERATOR in ("gpu", "cuda"):
        return True
    return runtime.ACCELERATOR == "auto" and torch.cuda.is_available()


def precision(runtime: Runtime) -> str:
    """``RUNTIME.PRECISION``, or bf16 mixed precision on GPUs that compute in bf16 natively and
    fp32 elsewhere (fp16 would need loss scaling, risky for the Jacobian regulariser's second
    derivatives; ask for ``16-mixed`` explicitly on older GPUs)."""
    if runtime.PRECISION:
        return runtime.PRECISION
    return "bf16-mixed" if uses_cuda(runtime) and native_bf16("cuda") else "32-true"


def device_name(runtime: Runtime) -> str:
    """Human-readable device of a run, for the run record."""
    if uses_cuda(runtime) and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)}), devices={runtime.DEVICES}"
    return f"cpu ({torch.get_num_threads()} threads)"


def build_loggers(runtime: Runtime, run_dir: Path, name: str) -> list[Logger]:
    """The loggers of ``RUNTIME.LOGGERS`` under ``run_dir``; each (re)start gets its own ``version_<k>``.

    TensorBoard is skipped when not installed; wandb is used only when asked for and
    installed (``WANDB_MODE=offline`` works as usual).
    """
    loggers: list[Logger] = []
    for kind in runtime.LOGGERS:
        if kind == "csv":
            loggers.append(CSVLogger(run_dir / "logs", name=name))
        elif kind == "tensorboard" and (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
            loggers.append(TensorBoardLogger(run_dir / "tensorboard", name=name))
        elif kind == "wandb":
            if importlib.util.find_spec("wandb") is None:
                warnings.warn("RUNTIME.LOGGERS asks for wandb, which is not installed; logging without it",
                              stacklevel=2)
                continue
            from lightning.pytorch.loggers import WandbLogger
            loggers.append(WandbLogger(project=name, save_dir=str(run_dir)))
    return loggers


def build_trainer(runtime: Runtime, run_dir: Path, name: str, max_epochs: int, checkpoint_every: int,
                  val_every: int | None = None) -> L.Trainer:
    """A Trainer for a long run: loggers, periodic + last + on-interrupt checkpoints under ``run_dir/<name>``."""
    torch.set_float32_matmul_precision(runtime.MATMUL_PRECISION)
    checkpoint_dir = run_dir / "checkpoints" / name
    checkpoints = ModelCheckpoint(dirpath=checkpoint_dir, filename="{epoch:05d}", every_n_epochs=checkpoint_every,
                                  save_top_k=1, monitor=None, save_last=True, save_on_train_epoch_end=True)
    return L.Trainer(
        accelerator=runtime.ACCELERATOR, devices=runtime.DEVICES, precision=precision(runtime),
        max_epochs=max_epochs, logger=build_loggers(runtime, run_dir, name) or False,
        callbacks=[checkpoints, CheckpointOnInterrupt(checkpoint_dir), RandomStateCheckpoint()],
        plugins=[AtomicCheckpointIO()],
        deterministic=runtime.DETERMINISTIC, default_root_dir=run_dir, log_every_n_steps=1,
        check_val_every_n_epoch=val_every or 1, num_sanity_val_steps=0,
        enable_progress_bar=runtime.PROGRESS_BAR, enable_model_summary=False,
    )


def build_fit_trainer(runtime: Runtime, max_epochs: int) -> L.Trainer:
    """A quiet single-device Trainer for a per-eye fit (no logs, no checkpoints, no device banner)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    torch.set_float32_matmul_precision(runtime.MATMUL_PRECISION)
    return L.Trainer(
        accelerator=runtime.ACCELERATOR, devices=1, precision=precision(runtime), max_epochs=max_epochs,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        deterministic=runtime.DETERMINISTIC, num_sanity_val_steps=0, limit_val_batches=0,
    )


def checkpoint_path(run_dir: Path, name: str) -> Path:
    """Where the last checkpoint of stage ``name`` lives."""
    return run_dir / "checkpoints" / name / LAST_CHECKPOINT


def inference_device(runtime: Runtime) -> torch.device:
    """Where dense prediction runs: the first CUDA GPU when the run uses CUDA, else the CPU."""
    return torch.device("cuda" if uses_cuda(runtime) and torch.cuda.is_available() else "cpu")


def end_distributed() -> None:
    """Leave the DDP process group after training, so the per-eye fits that follow run on their own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
