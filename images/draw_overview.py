"""Draw ``images/overview.png``, the schematic shown at the top of README.md.

Run from the repository root: ``python images/draw_overview.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BOXES = {
    # name: (x, y, w, h, colour, text)
    "sparse": (0.02, 0.58, 0.2, 0.3, "#dbe9f6", "Sparse OCT\n16–61 B-scans\n+ dense SLO en-face"),
    "geninr": (
        0.3,
        0.66,
        0.22,
        0.22,
        "#fde3c8",
        "Generalizable INR\nf(x, y, z, SLO | latent)\n→ intensity + 13 layers",
    ),
    "dense": (0.6, 0.66, 0.18, 0.22, "#d9f0d3", "Dense volume at\nany B-scan position"),
    "eval": (0.82, 0.66, 0.16, 0.22, "#eeeeee", "Gap-B-scan scores\nPSNR · SSIM · Dice\nASSD · HD95"),
    "defo": (0.3, 0.12, 0.22, 0.22, "#fde3c8", "Deformation INR\nφ(x | latent)\n(FiLM SIREN)"),
    "atlas": (0.6, 0.12, 0.18, 0.22, "#e5d8f0", "Continuous atlas INR\nintensity + 10 labels"),
    "reg": (0.82, 0.12, 0.16, 0.22, "#eeeeee", "Labels for the eye,\nat its own spacing"),
}
ARROWS = [
    ("sparse", "geninr"),
    ("geninr", "dense"),
    ("dense", "eval"),
    ("sparse", "defo"),
    ("defo", "atlas"),
    ("atlas", "reg"),
]


def _anchor(name: str, side: str) -> tuple[float, float]:
    x, y, w, h, _, _ = BOXES[name]
    return {"right": (x + w, y + h / 2), "left": (x, y + h / 2)}[side]


def draw(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(11, 4.2))
    ax.set_axis_off()
    for x, y, w, h, colour, text in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01", fc=colour, ec="#444444"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9.5)
    for start, end in ARROWS:
        ax.add_patch(
            FancyArrowPatch(
                _anchor(start, "right"), _anchor(end, "left"), arrowstyle="-|>", mutation_scale=14, color="#444444"
            )
        )
    ax.text(0.41, 0.95, "1  anisotropic_interpolation/: fill the gaps", ha="center", fontsize=11, weight="bold")
    ax.text(
        0.41, 0.41, "2  atlas_registration/: register to a continuous atlas", ha="center", fontsize=11, weight="bold"
    )
    ax.text(
        0.12, 0.5, "one latent code per eye;\nunseen eyes: fit the code only", ha="center", fontsize=8.5, style="italic"
    )
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(__file__).resolve().parent / "overview.png")
