"""The resolution experiment: register unseen eyes from every 1st/8th/16th/32nd B-scan, score on all.

The B-scan factors are ``EVALUATION.RESOLUTION_FACTORS``; the sparse eyes keep the true mm
positions of their B-scans, so the same trained atlas and deformation network apply::

    python atlas_registration/GINR_Atlas_resolution_inference.py configs/atlas/fit_GINR_Atlas_base.yml \\
        [--checkpoint RUN/checkpoints/registration/last.ckpt] [--output RUN/resolution]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: import from the repository root, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from atlas_registration.inference_commandline import run_inference
from retina_data.commandline import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    return run_inference(__doc__.splitlines()[0], argv, "resolution", resolution=True)


if __name__ == "__main__":
    run_cli(main)
