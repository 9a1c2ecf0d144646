"""Lightning Trainers for this tree: devices from the config/CLI, safe checkpoints, quiet per-eye fits.

Checkpoints are written through :func:`retina_data.checkpoints.save_checkpoint` (temporary file
in the checkpoint folder, then a rename; a failed write names the path and keeps the old file),
and also when the run is stopped by SIGTERM or SIGINT (Lightning turns both into an exception
that reaches ``on_exception``). ``last.ckpt`` rotates: the one it replaces stays as
``last.prev.ckpt``. A checkpoint is written only after a resume restored the run (a failed
restore leaves ``last.ckpt`` as it was) and only with finite weights; non-finite weights or a
non-finite training loss stop the run with
:class:`~retina_data.errors.TrainingDivergedError` (:func:`check_finite_weights`,
:func:`check_finite_loss`, called by every module's training step).

Lightning's own chatter (device banners, tips, warnings about what these trainers do on
purpose) is silenced by :func:`quiet_lightning`, so a run's log holds our lines only.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from atlas_registration.config import PrecisionName, Runtime
from retina_data.checkpoints import save_checkpoint
from retina_data.commandline import EXIT_INTERRUPTED, notice
from retina_data.errors import DataError, TrainingDivergedError
from retina_data.files import previous_path
from retina_data.precision import native_bf16
from retina_data.random_state import capture_random_states, restore_random_states
from retina_data.run_loggers import build_loggers

LAST_CHECKPOINT = "last.ckpt"
PERIODIC_CHECKPOINTS = "epoch=*.ckpt"
"""The periodic checkpoints ``ModelCheckpoint`` keeps beside ``last.ckpt`` (the latest one)."""
LIGHTNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r"You defined a `validation_step` but have no `val_dataloader`",
    r".*does not have many workers which may be a bottleneck",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"Checkpoint directory .* exists and is not empty",
    r"The dirpath has changed from .* won't be reloaded",
)
"""Lightning warnings about what these trainers do on purpose: frozen (eval-mode) atlases in the
per-eye fits, no validation loader when ``VAL_EYES`` is 0, ``NUM_WORKERS: 0`` and short epochs
by config, a resume into the checkpoint folder (moved or not: only ``last.ckpt`` is read, never
Lightning's best-k bookkeeping), and a deprecation inside Lightning itself."""


def quiet_lightning() -> None:
    """Silence Lightning's info lines (GPU/TPU banner, tips, "`Trainer.fit` stopped") and the
    warnings of :data:`LIGHTNING_NOISE`; its other warnings, and ours, still show."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=message)


def _diverged(
    module: L.LightningModule, batch_idx: int, what: str, rate_key: str, rate: float
) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"{type(module).__name__} diverged in epoch {module.current_epoch + 1}, step "
        f"{batch_idx + 1} (global step {module.global_step + 1}): {what}; try a lower "
        f"{rate_key} (now {rate:g})"
    )


def check_finite_weights(module: L.LightningModule, batch_idx: int, rate_key: str, rate: float) -> None:
    """Before a step: raise :class:`~retina_data.errors.TrainingDivergedError` if the previous update
    left a trainable weight non-finite (the step's loss would be NaN, and the reference's BCE
    refuses NaN probabilities with a RuntimeError instead of computing it)."""
    weights = [(name, value) for name, value in module.named_parameters() if value.requires_grad]
    if not weights or bool(torch.stack([value.detach().isfinite().all() for _, value in weights]).all()):
        return
    bad = [name for name, value in weights if not bool(value.detach().isfinite().all())]
    raise _diverged(
        module, batch_idx, f"non-finite weights {', '.join(bad[:3])} after the previous update", rate_key, rate
    )


def check_finite_loss(
    module: L.LightningModule, terms: Mapping[str, torch.Tensor], batch_idx: int, rate_key: str, rate: float
) -> None:
    """Raise :class:`~retina_data.errors.TrainingDivergedError` if a loss term of this step is not
    finite, naming the module, the step and epoch, every term and the learning rate ``rate_key``
    (now ``rate``) to lower; :func:`fit` adds where the last finite checkpoint is."""
    values = torch.stack([value.detach().float().reshape(()) for value in terms.values()])
    if bool(values.isfinite().all()):  # one device sync per step
        return
    shown = ", ".join(f"{name} {value:.4g}" for name, value in zip(terms, values.tolist()))
    raise _diverged(module, batch_idx, f"non-finite loss ({shown})", rate_key, rate)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the checkpoint, renamed into place; ``last.ckpt``
    keeps the one it replaces as ``last.prev.ckpt``. Weights that are not finite are never written."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        weights = checkpoint.get("state_dict", {})
        bad = [
            name
            for name, value in weights.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all())
        ]
        if bad:
            raise TrainingDivergedError(
                f"{path}: not written: the weights {', '.join(bad[:3])} are not finite; try a lower learning rate"
            )
        save_checkpoint(path, checkpoint, keep_previous=Path(path).name == LAST_CHECKPOINT)


class CheckpointOnInterrupt(Callback):
    """Writes ``last.ckpt`` when training stops on an exception (SIGTERM, SIGINT/Ctrl-C, errors),
    but not when the run never started (a resume whose restore failed: ``last.ckpt`` stays as
    it was) nor when it diverged (the last checkpoint is the last finite one)."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.path = Path(checkpoint_dir) / LAST_CHECKPOINT
        self.interrupted = False
        self.started = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit" or not self.started or isinstance(exception, TrainingDivergedError):
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        stop = (
            "SIGTERM"
            if isinstance(exception, SIGTERMException)  # a SystemExit that would exit 0, silently
            else "Ctrl-C (SIGINT)"
            if isinstance(exception, KeyboardInterrupt)
            else None
        )
        if stop is not None:
            self.interrupted = True
            notice(
                f"stopped by {stop} in epoch {trainer.current_epoch}; the checkpoint is {self.path}; "
                "continue with --resume"
            )
        if isinstance(exception, SIGTERMException):
            exception.code = EXIT_INTERRUPTED


def _interrupt_checkpoints(trainer: L.Trainer) -> list[CheckpointOnInterrupt]:
    """The trainer's :class:`CheckpointOnInterrupt` callbacks."""
    # Lightning's callback connector sets Trainer.callbacks (a list[Callback]); the Trainer class does not declare it
    callbacks: list[Callback] = trainer.callbacks  # type: ignore[attr-defined]
    return [callback for callback in callbacks if isinstance(callback, CheckpointOnInterrupt)]


def fit(trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
    """``trainer.fit``; a run stopped by Ctrl-C, which Lightning ends with exit code 1 after the
    checkpoint of :class:`CheckpointOnInterrupt`, ends with ``EXIT_INTERRUPTED`` instead.
    A diverged run (:class:`TrainingDivergedError`) is re-raised naming its last finite checkpoint.
    """
    try:
        trainer.fit(*args, **kwargs)
    except SystemExit:
        if any(callback.interrupted for callback in _interrupt_checkpoints(trainer)):
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise
    except TrainingDivergedError as exc:
        last = next((callback.path for callback in _interrupt_checkpoints(trainer)), None)
        kept = (
            f"{last} is the last finite checkpoint"
            if last is not None and last.is_file()
            else "no checkpoint of this stage was written"
        )
        raise TrainingDivergedError(f"{exc}; {kept}") from exc


class RandomStateCheckpoint(Callback):
    """Stores the Python, NumPy, torch (and CUDA) random states in each checkpoint and restores
    them on ``--resume``, so patch offsets and shuffling continue where the run stopped."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["random_states"] = capture_random_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("random_states")
        if states is not None:  # None: a checkpoint written before random states were stored
            restore_random_states(states)


def uses_cuda(runtime: Runtime) -> bool:
    """Whether the runtime settings put the run on a CUDA GPU."""
    if runtime.ACCELERATOR in ("gpu", "cuda"):
        return True
    return runtime.ACCELERATOR == "auto" and torch.cuda.is_available()


def precision(runtime: Runtime) -> PrecisionName:
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


def build_trainer(
    runtime: Runtime, run_dir: Path, name: str, max_epochs: int, checkpoint_every: int, val_every: int | None = None
) -> L.Trainer:
    """A Trainer for a long run: the loggers of ``RUNTIME.LOGGERS`` (:func:`retina_data.run_loggers.build_loggers`:
    CSV always, each (re)start its own ``version_<k>``), periodic + last + on-interrupt checkpoints under
    ``run_dir/<name>``."""
    quiet_lightning()
    torch.set_float32_matmul_precision(runtime.MATMUL_PRECISION)
    checkpoint_dir = run_dir / "checkpoints" / name
    checkpoints = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="{epoch:05d}",
        every_n_epochs=checkpoint_every,
        save_top_k=1,
        monitor=None,
        save_last=True,
        save_on_train_epoch_end=True,
    )
    return L.Trainer(
        accelerator=runtime.ACCELERATOR,
        devices=runtime.DEVICES,
        precision=precision(runtime),
        max_epochs=max_epochs,
        logger=build_loggers(runtime.LOGGERS, run_dir, name, key="RUNTIME.LOGGERS"),
        callbacks=[checkpoints, CheckpointOnInterrupt(checkpoint_dir), RandomStateCheckpoint()],
        plugins=[AtomicCheckpointIO()],
        deterministic=runtime.DETERMINISTIC,
        default_root_dir=run_dir,
        log_every_n_steps=1,
        check_val_every_n_epoch=val_every or 1,
        num_sanity_val_steps=0,
        enable_progress_bar=runtime.PROGRESS_BAR,
        enable_model_summary=False,
    )


def build_fit_trainer(runtime: Runtime, max_epochs: int) -> L.Trainer:
    """A quiet single-device Trainer for a per-eye fit (no logs, no checkpoints, no device banner)."""
    quiet_lightning()
    torch.set_float32_matmul_precision(runtime.MATMUL_PRECISION)
    return L.Trainer(
        accelerator=runtime.ACCELERATOR,
        devices=1,
        precision=precision(runtime),
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=runtime.DETERMINISTIC,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def checkpoint_path(run_dir: Path, name: str) -> Path:
    """Where the last checkpoint of stage ``name`` lives."""
    return run_dir / "checkpoints" / name / LAST_CHECKPOINT


def resume_checkpoint(run_dir: Path, name: str) -> Path | None:
    """The checkpoint a ``--resume`` of stage ``name`` continues from: its ``last.ckpt``, or ``None``
    when the stage has no checkpoint at all (it had not started: it starts now).

    A missing ``last.ckpt`` beside the rotated ``last.prev.ckpt`` or a periodic ``epoch=*.ckpt`` is
    refused naming them: continuing from another epoch silently would mix two runs' logs.
    """
    last = checkpoint_path(run_dir, name)
    if last.is_file():
        return last
    others = [previous_path(last), *sorted(last.parent.glob(PERIODIC_CHECKPOINTS))]
    present = [path.name for path in others if path.is_file()]
    if present:
        raise DataError(
            f"{last}: not found, but {', '.join(present)} (earlier checkpoints of this stage) "
            f"{'is' if len(present) == 1 else 'are'} there; copy one of them to {LAST_CHECKPOINT} to "
            "continue from it with --resume, or pass --overwrite to train again"
        )
    return None


def inference_device(runtime: Runtime) -> torch.device:
    """Where dense prediction runs: the first CUDA GPU when the run uses CUDA, else the CPU."""
    return torch.device("cuda" if uses_cuda(runtime) and torch.cuda.is_available() else "cpu")


def end_distributed() -> None:
    """Leave the DDP process group after training, so the per-eye fits that follow run on their own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
