"""Small layered eyes with known geometry for the atlas-utility tests (no phantom needed)."""

from __future__ import annotations

import numpy as np

from retina_data.eye import Eye

SPACING = (0.02, 0.05, 0.1)
"""(dH, dW, dD) mm of the synthetic eyes."""


def layered_labels(
    shape: tuple[int, int, int], top: float = 4.0, thickness: float = 2.0, dip: float = 3.0, shift: float = 0.0
) -> np.ndarray:
    """Labels ``[H, W, D]`` 0..12: 12 boundaries ``thickness`` rows apart from row ``top``,
    pushed down by a Gaussian pit of ``dip`` rows off-centre along W (so OD and OS differ
    by a mirror), and moved down by ``shift`` rows."""
    height, width, depth = shape
    w = np.arange(width)[:, None] / max(width - 1, 1)
    d = np.arange(depth)[None, :] / max(depth - 1, 1)
    pit = dip * np.exp(-((w - 0.35) ** 2 + (d - 0.5) ** 2) / 0.02)
    first = top + shift + pit
    boundaries = first[None] + thickness * np.arange(12)[:, None, None] * (1.0 - 0.3 * pit[None] / max(dip, 1e-9))
    rows = np.arange(height)[:, None, None, None]
    return (rows >= boundaries[None]).sum(axis=1).astype(np.uint8)


def layered_eye(
    subject: str = "sub001",
    laterality: str = "OD",
    shape: tuple[int, int, int] = (40, 24, 8),
    seed: int = 0,
    shift: float = 0.0,
) -> Eye:
    """An eye with :func:`layered_labels` (mirrored along W for OS) and layer-wise intensity."""
    labels = layered_labels(shape, shift=shift)
    if laterality == "OS":
        labels = labels[:, ::-1].copy()
    reflectivity = np.linspace(0.1, 0.9, 13)[np.array([0, 12, 3, 9, 4, 8, 2, 5, 11, 6, 7, 10, 1])]
    rng = np.random.default_rng(seed)
    oct_volume = reflectivity[labels] + 0.02 * rng.standard_normal(shape)
    return Eye(
        oct=oct_volume.astype(np.float32), spacing=SPACING, subject=subject, laterality=laterality, labels=labels
    )
