"""Densify a cohort with a saved gen-INR model: fit every eye's latent code and write its dense eye.

Usage (from the repository root)::

    resa-densify-cohort RUN_DIR DATA --subsample 4 --factor 4 --output OUT
    python anisotropic_interpolation/densify_cohort.py RUN_DIR a.npz b.npz --output OUT --devices 2
    resa-densify-cohort RUN_DIR cohort.zarr --output OUT --resume

``RUN_DIR`` is a run folder of ``train_test_geninr.py`` (its ``model.pt``) or the model file;
``DATA`` a retina_data tree, one or more ``.npz`` containers or an eye store (``.zarr``). Every
eye is densified as ``predict.py`` densifies one (the same functions: checked as ``validate``
checks it, every K-th B-scan as input with ``--subsample K``, its code fitted, predicted at F
times as many B-scans with ``--factor F`` or at ``--positions-mm``). The eyes are split over
the processes in contiguous blocks (``--devices N``, ``--num-nodes M``, or as torchrun / SLURM
start them); each eye's fit is seeded from ``TRAINING.SEED`` and its id, so its results do not
depend on which process, or which run, densified it. The output folder::

    OUT/
      run_identity.json          model, data and options (a --resume with others is refused)
      dataset.yaml               OUT is a retina_data tree of the dense eyes
      <subject>/<OD|OS>/         one dense eye: OCT, labels, SLO (+ probabilities_<eye>.npy),
                                 densified.json (its summary row)
      .partial/<eye_id>/         an eye being written; renamed into place when complete
      metrics_all.csv            one row per eye: input and output B-scans, fit loss, seconds
                                 (and gap PSNR / Dice where the stored eye has the gap B-scans)
      summary.csv, summary.md    one row per eye and a mean row (written when every eye is done)

An eye is done once its folder is renamed into place: ``--resume`` skips the eyes done, removes
the half-written ones and densifies the rest; the summary covers every eye of the cohort.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from anisotropic_interpolation.config import RESUME_FREE_KEYS, ExperimentConfig
from anisotropic_interpolation.distributed import add_launch_arguments, launch, shard
from anisotropic_interpolation.evaluation import MethodPrediction, score_eye
from anisotropic_interpolation.fitting import LatentFitter
from anisotropic_interpolation.model import ImplicitNetwork
from anisotropic_interpolation.pipeline import check_prediction_overrides, load_model, precision_notice
from anisotropic_interpolation.predict import (
    add_densification_arguments,
    checked_input,
    densify,
    model_file,
    output_positions,
)
from retina_data.commandline import interrupt_on_sigterm, notice, run_cli
from retina_data.config import to_dict
from retina_data.containers import read_container
from retina_data.errors import ConfigError, DataError
from retina_data.eye import Eye
from retina_data.eye_store import EyeStore, is_store, local_path
from retina_data.files import check_run_dir
from retina_data.result_tables import Metric, Summary, write_result_tables
from retina_data.run_identity import IDENTITY_FILE, RunIdentity, check_resume, read_run_identity, write_run_identity
from retina_data.tree import eye_files, list_eyes, read_eye, write_dataset_info, write_eye
from retina_data.validation import label_count

SCRIPT = "densify_cohort"
PARTIAL_DIR = ".partial"
"""Where an eye is written before its folder is renamed into place."""
RECORD_FILE = "densified.json"
"""An eye's summary row, inside its dense eye folder."""
POLL_SECONDS = 0.5
"""How often the first process looks for the eyes of the others once its own are done."""
FAILED_SUFFIX = ".failed"
ALIVE_SUFFIX = ".alive"
"""``.partial/process<rank>.alive``: a count another process raises while it densifies its eyes."""
HEARTBEAT_SECONDS = 2.0
"""How often a process other than the first raises its count."""
SILENCE_SECONDS = 30.0
"""How long the first process waits for eyes of a process whose count stands still (killed?)."""
"""``.partial/process<rank>.failed``: another process's error, for the first process waiting for its eyes."""
GAP_METHOD = "gen_inr"
METRICS = (
    Metric("input_bscans", "input B-scans", ".4g"),
    Metric("output_bscans", "output B-scans", ".4g"),
    Metric("fit_loss", "fit loss", ".4g"),
    Metric("gap_psnr", "gap PSNR (dB)", ".2f"),
    Metric("gap_dice", "gap Dice", ".3f"),
    Metric("seconds", "seconds", ".3g"),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run folder holding model.pt (or the model file itself)")
    parser.add_argument("data", nargs="+", help="a retina_data tree, .npz containers, or an eye store (.zarr)")
    parser.add_argument("--output", type=Path, required=True, help="output folder (a retina_data tree of dense eyes)")
    add_densification_arguments(parser)
    parser.add_argument(
        "--gpu",
        type=int,
        default=None,
        help="first CUDA device index (refused without CUDA); -1: the CPU; default: GPU 0 if there is one",
    )
    add_launch_arguments(parser)
    outputs = parser.add_mutually_exclusive_group()
    outputs.add_argument(
        "--resume", action="store_true", help="continue the run in --output: skip the eyes done, redo half-written ones"
    )
    outputs.add_argument("--overwrite", action="store_true", help="densify every eye again, replacing its folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with interrupt_on_sigterm():
        return densify_cohort(args)


# --- the cohort ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cohort:
    """The eyes to densify and how each is read.

    Attributes:
        eye_ids: ``<subject>_<laterality>`` of every eye, in cohort order (the order of the shards).
        read: the eye as stored, by id.
        source: ``"tree"``, ``"container"`` or ``"store"``: how :func:`~retina_data.validation.eye_problems` names a fault.
        where: by id, the data folder, container or store that problems are reported against.
        files: every data file read, for the run's identity.
        root: the data folder the ``files`` are named relative to.
        num_labels: label classes the data may hold (its ``dataset.yaml``).
    """

    eye_ids: list[str]
    read: Callable[[str], Eye]
    source: str
    where: Callable[[str], Path | str]
    files: list[Path]
    root: Path
    num_labels: int


def split_eye_id(eye_id: str) -> tuple[str, str]:
    """``("sub003", "OD")`` of ``"sub003_OD"``."""
    subject, _, laterality = eye_id.rpartition("_")
    if not subject:
        raise DataError(f"eye id {eye_id!r}: expected <subject>_<OD|OS>")
    return subject, laterality


def tree_cohort(data_dir: Path) -> Cohort:
    """Every eye of a retina_data tree (subject order, OD before OS)."""
    ids = [f"{subject}_{laterality}" for subject, laterality in list_eyes(data_dir)]
    if not ids:
        raise DataError(f"{data_dir}: no eyes found (expected <subject>/<OD|OS>/oct_flat_<od|os>.nii.gz)")
    files = [path for eye_id in ids for path in vars(eye_files(data_dir, *split_eye_id(eye_id))).values()]
    return Cohort(
        ids,
        lambda eye_id: read_eye(data_dir, *split_eye_id(eye_id)),
        "tree",
        lambda _: data_dir,
        files,
        data_dir,
        label_count(data_dir),
    )


def container_cohort(paths: list[Path]) -> Cohort:
    """Every eye of the containers, in container then stored order; an eye in two containers is refused.
    Each process reads a container again when it densifies its first eye of it (one at a time in memory)."""
    owner: dict[str, Path] = {}
    for path in paths:
        for eye in read_container(path):
            if eye.eye_id in owner:
                raise DataError(f"{path}: eye {eye.eye_id} is also in {owner[eye.eye_id]}; expected each eye once")
            owner[eye.eye_id] = path
    eyes_of = functools.lru_cache(maxsize=1)(lambda path: {eye.eye_id: eye for eye in read_container(path)})
    root = Path(os.path.commonpath([path.resolve().parent for path in paths]))
    return Cohort(
        list(owner),
        lambda eye_id: eyes_of(owner[eye_id])[eye_id],
        "container",
        owner.__getitem__,
        list(paths),
        root,
        max(label_count(path) for path in paths),
    )


def store_cohort(location: str) -> Cohort:
    """Every eye of an eye store (a path or fsspec URL), in store order; each read whole when densified."""
    store = EyeStore.open(location)
    local = local_path(location)
    files = [local / "zarr.json"] if local is not None else []
    return Cohort(
        list(store.eye_ids),
        store.read_eye,
        "store",
        lambda _: location,
        files,
        local if local is not None else Path.cwd(),
        store.num_labels,
    )


def open_cohort(data: list[str]) -> Cohort:
    """The cohort of an eye store, a tree folder or ``.npz`` containers."""
    if len(data) == 1 and is_store(data[0]):
        return store_cohort(data[0])
    if len(data) == 1 and Path(data[0]).is_dir():
        return tree_cohort(Path(data[0]))
    if len(data) == 1 and not Path(data[0]).exists():
        raise DataError(f"{data[0]}: not found; expected a data folder, an eye store (.zarr) or .npz containers")
    not_containers = [path for path in data if not path.endswith(".npz")]
    if not_containers:
        raise DataError(f"{not_containers[0]}: expected one data folder or eye store (.zarr), or .npz containers")
    missing = [path for path in data if not Path(path).is_file()]
    if missing:
        raise DataError(f"{missing[0]}: container not found")
    return container_cohort([Path(path) for path in data])


# --- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What the command line says about how every eye is densified."""

    subsample: int
    factor: int | None
    positions_mm: list[float] | None
    probabilities: bool

    @classmethod
    def of(cls, args: argparse.Namespace) -> Options:
        if args.subsample < 1:
            raise ConfigError(f"--subsample {args.subsample}: expected at least 1")
        if args.factor is not None and args.factor < 1:
            raise ConfigError(f"--factor {args.factor}: expected at least 1")
        return cls(args.subsample, args.factor, args.positions_mm, args.probabilities)


def eye_seed(seed: int, eye_id: str) -> int:
    """A 63-bit seed of one eye's fit, from the run's ``TRAINING.SEED`` and the eye id only."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{eye_id}".encode()).digest()[:8], "little") >> 1


def cohort_identity(config: ExperimentConfig, model_path: Path, options: Options, cohort: Cohort) -> RunIdentity:
    """The model (path, size and time of its file, its config with the ``--set`` changes), the
    densification options, the eyes and the size and time of every data file."""
    stat = model_path.stat()
    resolved = to_dict(config)
    resolved["DENSIFY"] = {
        "MODEL": str(model_path),
        "MODEL_FILE": [stat.st_size, stat.st_mtime_ns],
        "SUBSAMPLE": options.subsample,
        "FACTOR": options.factor,
        "POSITIONS_MM": options.positions_mm,
        "PROBABILITIES": options.probabilities,
    }
    return RunIdentity.of(SCRIPT, resolved, RESUME_FREE_KEYS, {"cohort": cohort.eye_ids}, cohort.files, cohort.root)


def check_output(out: Path, identity: RunIdentity, resume: bool) -> None:
    """Refuse (before anything is written) a ``--resume`` of another run, or of a folder that is
    not a cohort densification."""
    if not resume or not out.is_dir() or not any(out.iterdir()):
        return
    recorded = read_run_identity(out)
    if recorded is None or recorded.script != SCRIPT:
        raise DataError(
            f"{out}: --resume: no {IDENTITY_FILE} of a cohort densification there; pass --overwrite "
            "to start again, or another --output"
        )
    check_resume(out, recorded, identity)


def eye_folder(out: Path, eye_id: str) -> Path:
    """``OUT/<subject>/<laterality>``."""
    return eye_files(out, *split_eye_id(eye_id)).oct.parent


def is_done(out: Path, eye_id: str) -> bool:
    """Whether the eye's folder has been renamed into place (it holds its record)."""
    return (eye_folder(out, eye_id) / RECORD_FILE).is_file()


def fit_loss(fitter: LatentFitter, config: ExperimentConfig) -> float:
    """The loss of the last fit on its input B-scans: the lowest epoch mean with ``TEST.KEEP: best``, else the last."""
    losses = fitter.epoch_losses[-1][:, 0].numpy()
    return float(np.nanmin(losses) if config.TEST.KEEP == "best" else losses[-1])


def gap_scores(stored: Eye, subsample: int, result: Eye, tolerance_mm: float = 1e-6) -> dict[str, Any]:
    """PSNR and mean Dice (:func:`~anisotropic_interpolation.evaluation.score_eye`) of the predicted
    B-scans at the stored B-scans left out of the input, where the output has them; ``{}`` when it has none."""
    distance = np.abs(stored.bscan_positions[:, None] - result.bscan_positions[None, :])  # [D, n]
    covered = np.flatnonzero(distance.min(axis=1) <= tolerance_mm)
    is_input = np.arange(stored.shape[2]) % subsample == 0
    if not np.any(~is_input[covered]):
        return {}
    at = distance[covered].argmin(axis=1)
    prediction = MethodPrediction(result.oct[:, :, at], None if result.labels is None else result.labels[:, :, at])
    rows = score_eye(stored.select_bscans(covered), is_input[covered], {GAP_METHOD: prediction})
    gap = next(row for row in rows if row["subset"] == "gap")
    return {"gap_bscans": gap["n_bscans"], "gap_psnr": gap["psnr"], "gap_dice": gap["dice_mean"]}


@dataclass
class Densifier:
    """Densifies and writes one eye at a time on one process (a latent fitter reseeded per eye)."""

    network: ImplicitNetwork
    config: ExperimentConfig
    device: torch.device
    model_path: Path
    options: Options
    cohort: Cohort
    out: Path

    def __post_init__(self) -> None:
        self.fitter = LatentFitter(self.network, self.config, self.device)
        self.num_labels = max(self.cohort.num_labels, self.network.inputs.num_classes)

    def densify(self, eye_id: str) -> dict[str, Any]:
        """Fit, predict and write the eye; returns its summary row."""
        start = time.perf_counter()
        seed = eye_seed(self.config.TRAINING.SEED, eye_id)
        torch.manual_seed(seed)
        self.fitter.generator.manual_seed(seed)
        stored, sparse = checked_input(
            self.cohort.read(eye_id),
            self.network,
            self.config,
            self.cohort.source,
            self.cohort.where(eye_id),
            self.options.subsample,
            self.num_labels,
        )
        positions = output_positions(sparse, self.options.factor, self.options.positions_mm)
        result, dense = densify(
            self.network,
            self.config,
            self.device,
            sparse,
            positions,
            self.model_path,
            fitter=self.fitter,
            probabilities=self.options.probabilities,
        )
        row: dict[str, Any] = {
            "eye_id": eye_id,
            "input_bscans": sparse.shape[2],
            "output_bscans": int(positions.size),
            "fit_loss": fit_loss(self.fitter, self.config) if self.network.inputs.latent_size else None,
        }
        row.update(gap_scores(stored, self.options.subsample, result))
        row["seconds"] = time.perf_counter() - start
        self.write(eye_id, result, dense.probabilities, row)
        return row

    def write(self, eye_id: str, result: Eye, probabilities: np.ndarray | None, row: dict[str, Any]) -> Path:
        """Write the eye under ``.partial/<eye_id>`` and rename its folder into place."""
        partial = self.out / PARTIAL_DIR / eye_id
        shutil.rmtree(partial, ignore_errors=True)
        write_eye(partial, result)
        folder = eye_folder(partial, eye_id)
        if probabilities is not None:
            np.save(folder / f"probabilities_{eye_id}.npy", probabilities)
        (folder / RECORD_FILE).write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
        target = eye_folder(self.out, eye_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
        shutil.rmtree(partial)
        return target


def read_record(out: Path, eye_id: str) -> dict[str, Any]:
    path = eye_folder(out, eye_id) / RECORD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(
            f"{path}: cannot read the eye's record (not JSON: {exc}); remove its folder and --resume"
        ) from exc


def write_summary(out: Path, eye_ids: list[str]) -> Summary:
    """``metrics_all.csv`` (one row per eye) and ``summary.csv|md`` (one row per eye and a mean row)."""
    rows = [read_record(out, eye_id) for eye_id in eye_ids]
    grouped = [{"eye": row["eye_id"], **row} for row in rows] + [{"eye": "mean", **row} for row in rows]
    summary = Summary.from_rows(grouped, ("eye",), METRICS, headings={"n_eyes": "eyes"})
    write_result_tables(out, summary, all_rows=rows, per_eye=False, overwrite=True)
    return summary


def densify_cohort(args: argparse.Namespace) -> int:
    """Check everything, start the processes, densify this process's eyes; the first process
    then waits for the others' eyes and writes the summary."""
    options = Options.of(args)
    check_prediction_overrides(args.overrides)
    out = check_run_dir(args.output, overwrite=args.overwrite, resume=args.resume)
    if any(out.resolve() == Path(path).resolve() for path in args.data):
        raise ConfigError(f"--output {out}: is the data folder; expected another folder")
    model_path = model_file(args.run_dir).resolve()
    network, config, _ = load_model(model_path, torch.device("cpu"), args.overrides)  # checked before any launch
    cohort = open_cohort(args.data)
    check_output(out, cohort_identity(config, model_path, options, cohort), args.resume)

    fabric = launch(args.gpu, args.devices, args.num_nodes)
    first = fabric.global_rank == 0
    mine = [cohort.eye_ids[i] for i in shard(len(cohort.eye_ids), fabric.global_rank, fabric.world_size)]
    for eye_id in mine:
        shutil.rmtree(out / PARTIAL_DIR / eye_id, ignore_errors=True)
        if args.overwrite:
            shutil.rmtree(eye_folder(out, eye_id), ignore_errors=True)
    if first:  # failures and signs of life of an earlier run; this run's are written after the barrier
        for suffix in (FAILED_SUFFIX, ALIVE_SUFFIX):
            for marker in (out / PARTIAL_DIR).glob(f"*{suffix}"):
                marker.unlink()
    fabric.barrier()  # every eye folder of an --overwrite is gone before any process looks for done eyes
    network.to(fabric.device)
    if first:
        precision_notice(fabric.device, config)
        out.mkdir(parents=True, exist_ok=True)  # checked before the launch; the others may be writing eyes already
        write_run_identity(out, cohort_identity(config, model_path, options, cohort))
        write_dataset_info(
            out, f"densified by {model_path}", with_fluid=network.inputs.num_classes > 13, overwrite=True
        )
    todo = [eye_id for eye_id in mine if not is_done(out, eye_id)]
    owners = {
        cohort.eye_ids[index]: rank
        for rank in range(fabric.world_size)
        for index in shard(len(cohort.eye_ids), rank, fabric.world_size)
    }
    densifier = Densifier(network, config, fabric.device, model_path, options, cohort, out)
    try:
        with contextlib.nullcontext() if first else Heartbeat(out, fabric.global_rank):
            done = densify_eyes(densifier, todo, first, not args.quiet, Silence(out, owners))
    except BaseException as exc:  # the first process would otherwise wait for this one's eyes for ever
        if not first:
            report_failure(out, fabric.global_rank, exc)
        raise
    if not first:
        return 0
    summary = write_summary(out, cohort.eye_ids)
    with contextlib.suppress(OSError):
        for marker in (out / PARTIAL_DIR).glob(f"*{ALIVE_SUFFIX}"):  # a last beat of a process now through
            marker.unlink()
        (out / PARTIAL_DIR).rmdir()  # once empty
    lines = summary.table_markdown().splitlines()
    print(f"{done} eye(s) densified here, {len(cohort.eye_ids)} in {out / 'summary.md'}:")
    print("\n".join([lines[0], lines[1], lines[-1]]))
    return 0


def failure_marker(out: Path, rank: int) -> Path:
    return out / PARTIAL_DIR / f"process{rank}{FAILED_SUFFIX}"


def report_failure(out: Path, rank: int, exc: BaseException) -> None:
    """Leave process ``rank``'s error ``exc`` where the first process looks for it (best effort)."""
    with contextlib.suppress(OSError):
        marker = failure_marker(out, rank)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{exc}" or type(exc).__name__, encoding="utf-8")


def check_others(out: Path, waiting: int) -> None:
    """Raise :class:`DataError` if another process reported a failure while ``waiting`` eyes are not done."""
    failed = sorted((out / PARTIAL_DIR).glob(f"*{FAILED_SUFFIX}"))
    if failed:
        reason = failed[0].read_text(encoding="utf-8").strip()
        raise DataError(
            f"{failed[0]}: another process of the run ended before its eyes were done ({reason}); "
            f"{waiting} eye(s) not densified; --resume densifies them"
        )


def alive_marker(out: Path, rank: int) -> Path:
    return out / PARTIAL_DIR / f"process{rank}{ALIVE_SUFFIX}"


class Heartbeat:
    """While the block runs, a thread raises process ``rank``'s count in :func:`alive_marker`
    every :data:`HEARTBEAT_SECONDS`, so the first process can tell a slow process from a killed one
    (a count, not a file time: the clocks of the nodes need not agree)."""

    def __init__(self, out: Path, rank: int) -> None:
        self.path = alive_marker(out, rank)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="densify-heartbeat", daemon=True)

    def _beat(self) -> None:
        count = 0
        while True:
            count += 1
            with contextlib.suppress(OSError):  # best effort: a missed beat only delays the next
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(str(count), encoding="utf-8")
            if self.stop.wait(HEARTBEAT_SECONDS):
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()
        with contextlib.suppress(OSError):
            self.path.unlink()


class Silence:
    """The first process's watch over the processes whose eyes it waits for (``owners``: the
    process of every eye): :meth:`check` raises once one of them has not raised its count for
    :data:`SILENCE_SECONDS` (killed, or its node lost)."""

    def __init__(self, out: Path, owners: dict[str, int]) -> None:
        self.out, self.owners = out, owners
        self.heard: dict[int, tuple[str | None, float]] = {}

    def check(self, waiting: list[str]) -> None:
        now = time.monotonic()
        for rank in sorted({self.owners[eye_id] for eye_id in waiting}):
            try:
                count: str | None = alive_marker(self.out, rank).read_text(encoding="utf-8")
            except OSError:
                count = None
            last_count, since = self.heard.get(rank, (None, now))
            if count != last_count or rank not in self.heard:
                self.heard[rank] = (count, now)
            elif now - since > SILENCE_SECONDS:
                missing = sum(self.owners[eye_id] == rank for eye_id in waiting)
                raise DataError(
                    f"{alive_marker(self.out, rank)}: process {rank} of the run has given no sign of life for "
                    f"{SILENCE_SECONDS:.0f} s (killed?) with {missing} of its eye(s) not densified; "
                    "--resume densifies them"
                )


def densify_eyes(
    densifier: Densifier, todo: list[str], first: bool, progress: bool, silence: Silence | None = None
) -> int:
    """Densify the eyes ``todo`` of this process; the first process shows one bar over the whole
    cohort (the eyes done by every process, as their folders appear) and returns once all are done.
    Returns the number of eyes densified here."""
    out, cohort = densifier.out, densifier.cohort
    own = set(todo)
    others = [eye_id for eye_id in cohort.eye_ids if eye_id not in own and not is_done(out, eye_id)] if first else []
    total = len(cohort.eye_ids)
    before = total - len(todo) - len(others)
    if first and before:
        notice(f"{out}: {before} of {total} eyes done before; densifying the others")
    with tqdm(total=total, initial=before, desc="densify", unit="eye", disable=not (progress and first)) as bar:
        for count, eye_id in enumerate(todo, 1):
            densifier.densify(eye_id)
            others = [other for other in others if not is_done(out, other)]
            bar.update(total - (len(todo) - count) - len(others) - bar.n)
        while others:
            check_others(out, len(others))
            if silence is not None:
                silence.check(others)
            time.sleep(POLL_SECONDS)
            others = [other for other in others if not is_done(out, other)]
            bar.update(total - len(others) - bar.n)
    return len(todo)


if __name__ == "__main__":
    run_cli(main)
