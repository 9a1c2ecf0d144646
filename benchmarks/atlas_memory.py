"""Peak memory of holding the atlas's training eyes and drawing training patches from them.

Writes ``--eyes`` synthetic prepared eyes of the paper's shape (231 x 496 x 512 / k after the
transpose; float32 OCT and uint8 labels) one at a time as ``.npy`` into ``--cache``, reopens them
either memory-mapped (``DATA.CACHE_DIR``, the default here) or loaded into memory
(``--in-memory``, ``DATA.CACHE_DIR: ''``), draws one reference-sampled patch (PATCH_SIZE
[231, 62, 64]) of every eye, and prints the peak resident set size, with the anonymous and
file-backed (page cache, reclaimable) parts at the end. The disk needs ``--eyes`` x 285 MB at k = 1.

    python benchmarks/atlas_memory.py --eyes 80 --factor 8 --cache /scratch/atlas_cache
    python benchmarks/atlas_memory.py --eyes 80 --factor 1 --cache /scratch/atlas_cache
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

import numpy as np

from atlas_registration.datasets.coordinates import grid_extent
from atlas_registration.datasets.eyes import memory_mapped
from atlas_registration.datasets.patches import StridedPatchDataset
from retina_data.eye import Eye

PAPER_SHAPE = (231, 496, 512)
PAPER_SPACING = (3.87e-3, 11.7e-3, 11.7e-3)
"""mm per voxel (a Spectralis-like 6 mm scan); only the coordinates depend on it."""


def status_kib(field: str) -> int:
    """A ``VmRSS``-style field of ``/proc/self/status`` in KiB (0 where the platform has none)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return 0
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def synthetic_eye(index: int, shape: tuple[int, int, int]) -> Eye:
    rng = np.random.default_rng(index)
    oct_volume = rng.random(shape, dtype=np.float32)
    labels = (np.arange(shape[0])[:, None, None] * 10 // shape[0]).astype(np.uint8) * np.ones(shape, np.uint8)
    return Eye(oct=oct_volume, spacing=PAPER_SPACING, subject=f"sub{index:03d}", labels=labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eyes", type=int, default=80)
    parser.add_argument("--factor", type=int, default=8, help="DATA.SUBSMPL_FACTOR (B-scans = 512 / factor)")
    parser.add_argument("--cache", type=Path, required=True, help="folder for the .npy files")
    parser.add_argument("--in-memory", action="store_true", help="hold the eyes in memory instead")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help="eye shape H W D (default: the paper's)")
    args = parser.parse_args()
    shape = tuple(args.shape) if args.shape else (PAPER_SHAPE[0], PAPER_SHAPE[1], PAPER_SHAPE[2] // args.factor)
    args.cache.mkdir(parents=True, exist_ok=True)
    eyes = []
    for index in range(args.eyes):
        eye = memory_mapped(synthetic_eye(index, shape), args.cache, args.factor)
        eyes.append(Eye(oct=np.array(eye.oct), spacing=eye.spacing, subject=eye.subject, labels=np.array(eye.labels))
                    if args.in_memory else eye)
    data = StridedPatchDataset(eyes, grid_extent(shape, PAPER_SPACING), [231, 62, 64])
    points = sum(int(data[i]["intensity"].numel()) for i in range(len(data)))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mode = "in memory" if args.in_memory else "memory-mapped"
    print(f"{args.eyes} eyes {shape} ({mode}), one patch each ({points} points): peak RSS {peak_mib:.0f} MiB; "
          f"now RssAnon {status_kib('RssAnon') / 1024:.0f} MiB, RssFile {status_kib('RssFile') / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
