"""Register the fold's unseen (test) eyes with a trained GINR atlas: only their latent codes are fitted.

Also runs the configured baselines on the same eyes and writes warped eyes, displacement
fields, metric tables and figures::

    python atlas_registration/GINR_Atlas_base_inference.py configs/atlas/fit_GINR_Atlas_base.yml \\
        [--checkpoint RUN/checkpoints/registration/last.ckpt] [--output RUN/inference]
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
    return run_inference(__doc__.splitlines()[0], argv, "inference", resolution=False)


if __name__ == "__main__":
    run_cli(main)
