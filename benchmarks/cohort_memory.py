"""Peak memory and time per step of gen-INR training on 200 and on 2,000 eyes of an eye store.

Writes a store of ``max(--eyes)`` small phantom eyes (``SHAPE``, labels and SLO) once into a
temporary folder: ``DISTINCT`` phantom eyes are generated and repeated under new subject ids (a
phantom eye takes about a second to generate; the store's reads do not depend on its contents).
Then trains in one fresh interpreter per setting (eyes x streamed or kept on the device, in
interleaved rounds): a few dozen patch steps of a tiny network with one latent code per eye,
and prints each child's peak RSS (``VmHWM``), its RSS before the first step, the median time
per step (the first ``WARMUP`` steps left out), and the B-scans and bytes read per step.

    python -m benchmarks.cohort_memory                      # 200 and 2,000 eyes, 3 rounds
    python -m benchmarks.cohort_memory --child STORE --eyes 2000 --steps 60 [--on-device]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (64, 64, 8)
"""``[H, W, D]`` of each eye; all its B-scans are inputs (factor 1)."""
DISTINCT = 8
LATENT = 64
BATCH_POINTS = 4096
PATCH = 16
WARMUP = 5


PAPER_BSCAN = (496, 512)
"""``H x W`` of a paper-shaped B-scan; ``PAPER_INPUTS`` input B-scans per eye, its SLO ``W x PAPER_SLO_COLUMNS``."""
PAPER_INPUTS = 16
PAPER_SLO_COLUMNS = 512


def epoch_cost(eyes: int, sampling: str, batch_points: int = 65536, patch: int = 16) -> dict[str, float]:
    """Points, steps and bytes an epoch over ``eyes`` paper-shaped eyes (labels and SLO) reads when
    streamed: ``bscan``: every input B-scan once, with its eye's SLO image; ``patches``:
    ``batch_points`` in ``patch x patch`` patches per step, each patch reading its whole B-scan and
    its eye's SLO (the patches of a step almost always fall on distinct eyes at this scale)."""
    height, width = PAPER_BSCAN
    points = eyes * PAPER_INPUTS * height * width
    bscan_bytes = height * width * (4 + 1)
    slo_bytes = width * PAPER_SLO_COLUMNS * 4
    if sampling == "bscan":
        steps, reads = eyes * PAPER_INPUTS, eyes * PAPER_INPUTS
    else:
        per_step = batch_points // (patch * patch)
        steps = -(-points // (per_step * patch * patch))
        reads = steps * per_step
    return {"points": points, "steps": steps, "bytes": reads * (bscan_bytes + slo_bytes),
            "store_bytes": eyes * (PAPER_INPUTS * bscan_bytes + slo_bytes)}


def write_cohort(location: Path, count: int) -> float:
    """A store of ``count`` eyes at ``location`` (``DISTINCT`` phantom eyes repeated under new
    subject ids); the seconds it took."""
    from retina_data.eye_store import write_store
    from retina_data.phantom import PhantomConfig, make_eye

    started = time.perf_counter()
    config = PhantomConfig(n_subjects=DISTINCT // 2, shape=SHAPE)
    base = [make_eye(config, subject, laterality) for subject in range(DISTINCT // 2) for laterality in ("OD", "OS")]
    eyes = (dataclasses.replace(base[index % DISTINCT], subject=f"cohort{index // 2:05d}", meta={})
            for index in range(count))
    write_store(location, eyes, progress=False)
    return time.perf_counter() - started


def status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of ``/proc/self/status`` in MiB;
    ``VmHWM`` falls back to ``getrusage`` where there is no ``/proc`` (whose peak, unlike
    ``VmHWM``, includes the parent's resident set at the fork: a child's ``ru_maxrss`` starts
    from it)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if field == "VmHWM" else 0.0


def train(location: Path, eyes: int, steps: int, on_device: bool) -> dict[str, float]:
    """``steps`` training steps on the first ``eyes`` eyes of the store; the measurements."""
    import torch

    from anisotropic_interpolation.config import ExperimentConfig
    from anisotropic_interpolation.model import NetworkInputs, build_network
    from anisotropic_interpolation.sampling import SparseVolumes, TrainingVolumes
    from anisotropic_interpolation.streaming import StreamedVolumes
    from anisotropic_interpolation.training import NetworkTrainer
    from retina_data.config import from_dict
    from retina_data.eye_store import EyeStore

    torch.set_num_threads(1)
    config = from_dict({
        "PREPROCESSING": {"BSCAN_SUBSAMPLE_FACTOR": 1, "SLICE_COORD_SCALE": 1.0},
        "TRAINING": {"LATENT_CODE": {"SIZE": LATENT}, "TOTAL_EPOCHS": 1, "STEPS_PER_EPOCH": steps,
                     "SAMPLING": "patches", "BATCH_POINTS": BATCH_POINTS, "PATCH_SIZE": PATCH,
                     "LOSS_RECON": "MSE", "LR_SCHEDULE": "constant"},
        "MODEL": {"NUM_LAYERS": 2, "HIDDEN_SIZE": 32, "ACTIVATION": "SIREN"},
    }, ExperimentConfig, source="cohort benchmark")
    store = EyeStore.open(location)
    ids = store.eye_ids[:eyes]
    data: TrainingVolumes
    if on_device:
        data = SparseVolumes.from_eyes([store.read_eye(eye_id) for eye_id in ids], use_labels=True, use_slo=True,
                                       slice_scale=1.0, device="cpu")
    else:
        data = StreamedVolumes.from_store(store, ids, use_labels=True, use_slo=True, slice_scale=1.0, device="cpu")
    torch.manual_seed(0)
    network = build_network(config, NetworkInputs(use_slo=True, latent_size=LATENT, num_classes=13))
    trainer = NetworkTrainer(network, data, config, None, progress=False)
    ready = status_mib("VmRSS")
    trainer.source.start_epoch()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        trainer.step()
        times.append(time.perf_counter() - started)
    read = (data.bscans_read, data.bytes_read) if isinstance(data, StreamedVolumes) else (0, 0)
    return {"eyes": eyes, "on_device": on_device, "ready_mib": ready,
            "peak_mib": status_mib("VmHWM"),
            "step_s": statistics.median(times[WARMUP:] or times), "points": trainer.plan.points,
            "bscans_per_step": read[0] / steps, "bytes_per_step": read[1] / steps}


def run(eyes: tuple[int, ...] = (200, 2000), steps: int = 60, rounds: int = 3) -> dict:
    """Write the store, then measure every setting in its own interpreter, ``rounds`` interleaved
    rounds; per setting the median of the rounds and the spread (largest / smallest step time)."""
    settings = [(count, on_device) for on_device in (False, True) for count in eyes]
    measured: dict[tuple[int, bool], list[dict]] = {setting: [] for setting in settings}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as folder:
        location = Path(folder) / "cohort.zarr"
        write_s = write_cohort(location, max(eyes))
        store_bytes = sum(path.stat().st_size for path in location.rglob("*") if path.is_file())
        for _ in range(rounds):
            for count, on_device in settings:
                command = [sys.executable, "-m", "benchmarks.cohort_memory", "--child", str(location),
                           "--eyes", str(count), "--steps", str(steps)] + (["--on-device"] if on_device else [])
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                measured[(count, on_device)].append(json.loads(output.strip().splitlines()[-1]))
    rows = []
    for setting, results in measured.items():
        times = [result["step_s"] for result in results]
        row = {key: statistics.median(result[key] for result in results)
               for key in ("ready_mib", "peak_mib", "step_s", "bscans_per_step", "bytes_per_step")}
        rows.append({**results[0], **row, "spread": max(times) / min(times)})
    return {"rows": rows, "write_s": write_s, "store_bytes": store_bytes, "load": load,
            "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"), "steps": steps,
            "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", type=Path, help="measure one setting on this store (internal)")
    parser.add_argument("--eyes", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--on-device", action="store_true", help="with --child: keep the eyes on the device")
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(train(args.child, args.eyes[0], args.steps, args.on_device)))
        return
    print(json.dumps(run(tuple(args.eyes), args.steps, args.rounds), indent=1))


if __name__ == "__main__":
    main()
