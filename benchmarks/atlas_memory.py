"""Peak memory of holding the atlas's training eyes and drawing training patches from them.

Writes ``--eyes`` synthetic prepared eyes of the paper's shape (231 x 496 x 512 / k after the
transpose; float32 OCT and uint8 labels) one at a time into ``--cache`` and then holds them as
training does: memory-mapped ``.npy`` files (``DATA.CACHE_DIR``, the default here), loaded into
memory (``--in-memory``, ``DATA.CACHE_DIR: ''``), or in an eye store (``--store``,
``SETTINGS.DATA_DIR`` a ``.zarr``, written by a process of its own beforehand: each eye checked
once, as the pipeline does, then read per patch). It draws one reference-sampled patch (PATCH_SIZE [231, 62, 64]) of every eye and prints
the peak resident set size (``VmHWM``), the anonymous (the process's own) and file-backed (page cache,
reclaimable) parts at the end, and the time per patch; the last line is the same as JSON. The
disk needs ``--eyes`` x 285 MB at k = 1.

    python benchmarks/atlas_memory.py --eyes 80 --factor 8 --cache /scratch/atlas_cache [--in-memory | --store]
    python benchmarks/atlas_memory.py --eyes 2000 --shape 64 64 8 --cache /scratch/atlas_cache --store
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

import numpy as np

from atlas_registration.datasets.coordinates import grid_extent
from atlas_registration.datasets.eyes import memory_mapped
from atlas_registration.datasets.label_mapping import LabelMapping
from atlas_registration.datasets.patches import StridedPatchDataset
from atlas_registration.datasets.store_eyes import AtlasEye, store_eyes
from retina_data.eye import Eye
from retina_data.eye_store import write_store
from retina_data.memory import peak_rss_mib, process_status_kib

PAPER_SHAPE = (231, 496, 512)
PAPER_SPACING = (3.87e-3, 11.7e-3, 11.7e-3)
"""mm per voxel (a Spectralis-like 6 mm scan); only the coordinates depend on it."""
PATCH_SIZE = [231, 62, 64]


def synthetic_eye(index: int, shape: tuple[int, int, int]) -> Eye:
    """A prepared eye ``shape``: uniform random intensities in [0, 1), labels 0..9 rising with depth."""
    rng = np.random.default_rng(index)
    oct_volume = rng.random(shape, dtype=np.float32)
    labels = (np.arange(shape[0])[:, None, None] * 10 // shape[0]).astype(np.uint8) * np.ones(shape, np.uint8)
    return Eye(oct=oct_volume, spacing=PAPER_SPACING, subject=f"sub{index:03d}", labels=labels)


def write_synthetic_store(location: str, count: int, shape: tuple[int, int, int]) -> None:
    """``count`` synthetic eyes into a store (run in a process of its own: training reads a store written
    beforehand, so writing is not part of the measured process)."""
    write_store(location, (synthetic_eye(index, shape) for index in range(count)), overwrite=True, progress=False)


def held_eyes(count: int, shape: tuple[int, int, int], cache: Path, mode: str, factor: int) -> list[AtlasEye]:
    """``count`` synthetic eyes held as ``mode`` (``memory-mapped``, ``in memory``, ``store``) says."""
    if mode == "store":
        location = str(cache / "eyes.zarr")
        writer = multiprocessing.get_context("spawn").Process(
            target=write_synthetic_store, args=(location, count, shape)
        )
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            raise RuntimeError(f"writing the store {location} failed (exit code {writer.exitcode})")
        eyes = store_eyes(location, [f"sub{index:03d}" for index in range(count)], LabelMapping.default(), False)
        for stored in eyes:
            stored.check()
        return list(eyes)
    held: list[AtlasEye] = []
    for index in range(count):
        eye = memory_mapped(synthetic_eye(index, shape), cache, factor)
        held.append(
            Eye(oct=np.array(eye.oct), spacing=eye.spacing, subject=eye.subject, labels=np.array(eye.labels))
            if mode == "in memory"
            else eye
        )
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eyes", type=int, default=80)
    parser.add_argument("--factor", type=int, default=8, help="DATA.SUBSMPL_FACTOR (B-scans = 512 / factor)")
    parser.add_argument("--cache", type=Path, required=True, help="folder for the .npy files or the store")
    held = parser.add_mutually_exclusive_group()
    held.add_argument("--in-memory", action="store_true", help="hold the eyes in memory instead")
    held.add_argument("--store", action="store_true", help="read the eyes from an eye store instead")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="eye shape H W D (default: the paper's)")
    args = parser.parse_args()
    started = time.perf_counter()
    shape = tuple(args.shape) if args.shape else (PAPER_SHAPE[0], PAPER_SHAPE[1], PAPER_SHAPE[2] // args.factor)
    mode = "store" if args.store else "in memory" if args.in_memory else "memory-mapped"
    args.cache.mkdir(parents=True, exist_ok=True)
    eyes = held_eyes(args.eyes, shape, args.cache, mode, args.factor)
    data = StridedPatchDataset(eyes, grid_extent(shape, PAPER_SPACING), PATCH_SIZE)
    drawing = time.perf_counter()
    points = sum(int(data[i]["intensity"].numel()) for i in range(len(data)))
    patch_ms = (time.perf_counter() - drawing) / len(data) * 1000
    result = {
        "eyes": args.eyes,
        "shape": list(shape),
        "mode": mode,
        "points": points,
        "peak_rss_mib": peak_rss_mib(),
        "anonymous_mib": process_status_kib("RssAnon") / 1024,
        "file_mib": process_status_kib("RssFile") / 1024,
        "patch_ms": patch_ms,
        "wall_s": time.perf_counter() - started,
    }
    print(
        f"{args.eyes} eyes {shape} ({mode}), one patch each ({points} points): peak RSS "
        f"{result['peak_rss_mib']:.0f} MiB; now RssAnon {result['anonymous_mib']:.0f} MiB, RssFile "
        f"{result['file_mib']:.0f} MiB; {patch_ms:.1f} ms per patch"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
