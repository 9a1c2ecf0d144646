"""Label conventions of the dataset layout: 13 retinal classes, plus an optional fluid class.

Twelve layer boundaries (ILM at the top, Bruch's membrane at the bottom) separate 13
classes. The optional pathology class (subretinal fluid, as in central serous
chorioretinopathy) takes label 13 when a data set declares it in ``dataset.yaml``.
"""

from __future__ import annotations

import numpy as np

LAYER_LABEL_NAMES: tuple[str, ...] = (
    "background",  # 0: vitreous above the ILM
    "RNFL",  # 1: retinal nerve fibre layer
    "GCL",  # 2: ganglion cell layer
    "IPL",  # 3: inner plexiform layer
    "INL",  # 4: inner nuclear layer
    "OPL",  # 5: outer plexiform layer
    "ONL",  # 6: outer nuclear layer (down to the ELM)
    "IS",  # 7: photoreceptor inner segments (ELM to EZ)
    "EZ",  # 8: ellipsoid zone
    "OS",  # 9: photoreceptor outer segments
    "IZ",  # 10: interdigitation zone
    "RPE",  # 11: retinal pigment epithelium, down to Bruch's membrane
    "choroid",  # 12: below Bruch's membrane
)
NUM_LAYER_CLASSES = len(LAYER_LABEL_NAMES)

FLUID_LABEL = 13
FLUID_LABEL_NAME = "SRF"

BOUNDARY_NAMES: tuple[str, ...] = (
    "ILM",
    "RNFL/GCL",
    "GCL/IPL",
    "IPL/INL",
    "INL/OPL",
    "OPL/ONL",
    "ELM",
    "IS/EZ",
    "EZ/OS",
    "OS/IZ",
    "IZ/RPE",
    "BM",
)
"""Boundary ``i`` lies between class ``i`` and class ``i + 1``."""

RETINA_LABELS: tuple[int, ...] = tuple(range(1, 12))
"""Labels inside the retina (ILM to Bruch's membrane), used for the retina Dice."""


def label_names(with_fluid: bool = False) -> list[str]:
    """Class names indexed by label value, optionally with the fluid class appended."""
    names = list(LAYER_LABEL_NAMES)
    if with_fluid:
        names.append(FLUID_LABEL_NAME)
    return names


def labels_from_boundaries(boundaries: dict[int, np.ndarray], height: int) -> np.ndarray:
    """Label volume ``[H, W, D]`` (uint8) from boundary rows ``{index: rows [W, D]}``.

    Boundary ``i`` (see :data:`BOUNDARY_NAMES`) at row ``y`` puts every voxel with row
    ``>= y`` into class ``i + 1`` or deeper; each voxel takes the deepest class whose upper
    boundary lies at or above it. Boundaries may be missing (then the class below the
    nearest present boundary above fills the gap) and rows may be NaN where an A-scan has
    no annotation for that boundary.
    """
    rows = np.arange(height, dtype=np.float64)[:, None, None]
    labels: np.ndarray | None = None
    for index, boundary in sorted(boundaries.items()):
        if not 0 <= index < len(BOUNDARY_NAMES):
            raise ValueError(f"boundary index {index} outside 0..{len(BOUNDARY_NAMES) - 1}")
        below = rows >= np.asarray(boundary, dtype=np.float64)[None]
        if labels is None:
            labels = np.zeros((height, *np.shape(boundary)), dtype=np.uint8)
        labels = np.maximum(labels, np.where(below, index + 1, 0).astype(np.uint8))
    if labels is None:
        raise ValueError("no boundaries given")
    return labels
