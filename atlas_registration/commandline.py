"""The command-line options every atlas entry script shares, and how they override the config."""

from __future__ import annotations

import argparse

import lightning as L
import torch

from atlas_registration.config import AtlasConfig, load_atlas_config
from retina_data.errors import ConfigError


def base_parser(description: str) -> argparse.ArgumentParser:
    """``CONFIG`` plus output, resume/overwrite, device and override options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("config", help="YAML config (e.g. configs/atlas/fit_GINR_Atlas_base.yml)")
    parser.add_argument("--output", help="run folder (default RESULT_DIR/<PROJECT_NAME>_fold<FOLD>)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier run")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoints of the run folder")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    parser.add_argument("--accelerator", help="Lightning accelerator: auto, cpu, gpu, mps")
    parser.add_argument("--devices", help="Lightning devices: auto, a count, or GPU indices like 0,1")
    parser.add_argument("--gpus", type=int, help="number of GPUs (0: CPU; >1: DDP)")
    parser.add_argument("--gpu", type=int, help="one GPU by index (-1: CPU)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set TRAINING.TOTAL_EPOCHS=10 (repeatable)",
    )
    return parser


def _devices(text: str) -> int | str | list[int]:
    if text == "auto":
        return text
    try:
        return [int(part) for part in text.split(",") if part] if "," in text else int(text)
    except ValueError as exc:
        raise ConfigError(f"--devices {text!r}: expected auto, a count or comma-separated GPU indices") from exc


def check_cuda_request(args: argparse.Namespace) -> None:
    """Refuse ``--gpu N``, ``--gpus N`` (N > 0) or ``--accelerator gpu|cuda`` without the CUDA devices
    they name: a run never falls back to the CPU silently."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    asked = [
        (f"--gpu {args.gpu}", args.gpu + 1) if args.gpu is not None and args.gpu >= 0 else None,
        (f"--gpus {args.gpus}", args.gpus) if args.gpus is not None and args.gpus > 0 else None,
        (f"--accelerator {args.accelerator}", 1) if args.accelerator in ("gpu", "cuda") else None,
    ]
    for option, needed in filter(None, asked):
        if count == 0:
            raise ConfigError(
                f"{option}: no CUDA device present (torch.cuda.is_available() is false); use --gpu -1 for the CPU"
            )
        if needed > count:
            raise ConfigError(f"{option}: only {count} CUDA device(s) present")


def load_from_args(args: argparse.Namespace) -> AtlasConfig:
    """The config with ``--set`` overrides and the device/determinism flags applied (GPUs that are
    not there refused: :func:`check_cuda_request`); seeds everything."""
    if args.resume and args.overwrite:
        raise ConfigError("give either --resume or --overwrite, not both")
    check_cuda_request(args)
    cfg = load_atlas_config(args.config, args.overrides)
    runtime = cfg.RUNTIME
    if args.gpu is not None:
        runtime.ACCELERATOR, runtime.DEVICES = ("cpu", 1) if args.gpu < 0 else ("gpu", [args.gpu])
    if args.gpus is not None:
        runtime.ACCELERATOR, runtime.DEVICES = ("cpu", 1) if args.gpus <= 0 else ("gpu", args.gpus)
    if args.accelerator:
        runtime.ACCELERATOR = args.accelerator
    if args.devices:
        runtime.DEVICES = _devices(args.devices)
    if runtime.ACCELERATOR in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"{args.config}: RUNTIME.ACCELERATOR = {runtime.ACCELERATOR!r}: no CUDA device present; "
            "use --gpu -1 (or ACCELERATOR: cpu / auto) for the CPU"
        )
    runtime.DETERMINISTIC = runtime.DETERMINISTIC or args.deterministic
    L.seed_everything(cfg.SETTINGS.SEED, workers=True, verbose=False)
    return cfg
