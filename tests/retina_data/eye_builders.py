"""Small eyes built directly with ``Eye`` for the dataset-layout tests.

A module of its own (not ``conftest``) so that test files import it by a unique name,
whichever subset of the test tree pytest collects.
"""

from __future__ import annotations

import numpy as np

from retina_data.eye import Eye
from retina_data.labels import labels_from_boundaries

SHAPE = (40, 12, 8)
"""(H, W, D) of the test eyes: tiny, but with room for 12 layer boundaries."""
SPACING = (0.0039, 0.0117, 0.12)


def layered_labels(shape: tuple[int, int, int], top: int = 6, step: int = 2) -> np.ndarray:
    """Labels ``[H, W, D]`` with all 12 boundaries flat, ``step`` rows apart from row ``top``."""
    _, width, depth = shape
    boundaries = {i: np.full((width, depth), float(top + step * i)) for i in range(12)}
    return labels_from_boundaries(boundaries, shape[0])


def build_eye(
    subject: str = "sub001",
    laterality: str = "OD",
    shape: tuple[int, int, int] = SHAPE,
    seed: int = 0,
    labels: bool = True,
    slo: bool = True,
    positions: np.ndarray | None = None,
) -> Eye:
    """A random eye with flat layered labels and a dense SLO."""
    rng = np.random.default_rng(seed)
    return Eye(
        oct=rng.random(shape, dtype=np.float32),
        spacing=SPACING,
        subject=subject,
        laterality=laterality,
        labels=layered_labels(shape) if labels else None,
        slo=rng.random(shape[1:], dtype=np.float32) if slo else None,
        bscan_positions=positions,
    )
