"""Layer thickness maps and the ETDRS grid: what clinicians read from a macular volume.

A thickness map gives, for every A-scan, the thickness in µm of one layer or a group of
layers: the number of its voxels along the A-scan times the depth spacing. Maps are
``[W, D]`` (A-scans x B-scans), so a densified volume gives a dense map and a sparse scan a
map at its B-scans only.

The ETDRS grid (Early Treatment Diabetic Retinopathy Study) summarises a map in nine sectors
around the fovea: the central disc (diameter 1 mm, ``C``), an inner ring (1 to 3 mm) and an
outer ring (3 to 6 mm), each ring cut into superior, nasal, inferior and temporal quadrants
(``S1, N1, I1, T1``, ``S2, N2, I2, T2``). Directions follow the dataset layout: on the fundus
picture (A-scans left to right, B-scans top to bottom) superior is towards the first B-scan
and nasal is towards the right for a right eye (OD), towards the left for a left eye (OS).
The fovea is the thinnest point of the total retina within 1.5 mm of the scan centre (a
smoothed map), or the centre itself when the eye has no labels there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.files import atomic_save, atomic_write_text, refuse_existing
from retina_data.labels import LAYER_LABEL_NAMES, RETINA_LABELS
from retina_data.result_tables import Metric

SECTORS: tuple[str, ...] = ("C", "S1", "N1", "I1", "T1", "S2", "N2", "I2", "T2")
RING_DIAMETERS_MM = (1.0, 3.0, 6.0)
GROUPS: dict[str, tuple[int, ...]] = {
    "retina": RETINA_LABELS,  # ILM to Bruch's membrane
    **{LAYER_LABEL_NAMES[label]: (label,) for label in RETINA_LABELS},
}
"""Thickness maps written by default: the total retina and each retinal layer."""
FOVEA_SEARCH_MM = 1.5
ERROR_PROTOCOL = "thickness"
"""The protocol name of the thickness-error tables of both trees' evaluations (``summary_thickness.md``,
written by :func:`retina_data.result_tables.write_result_tables`)."""
ERROR_METRICS: tuple[Metric, ...] = tuple(Metric(sector, f"{sector} (µm) ↓", ".2f") for sector in SECTORS)
"""The columns of those tables: the mean absolute thickness error of each ETDRS sector."""


def relabelled_groups(table: Mapping[int, int], names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """The layer groups of labels relabelled by ``table`` (source label -> class; e.g. the atlas's
    10 classes, in which IS and EZ are one class): the total retina (every class made of retinal
    layers only, ILM to Bruch's membrane) and each such class on its own, named by ``names``
    (one per class). A merged class is the thickness between the outer boundaries of its layers;
    a class holding a non-retinal label (background, choroid, fluid) is in no group."""
    classes = sorted(set(table.values()))
    retinal = tuple(
        target
        for target in classes
        if all(source in RETINA_LABELS for source, value in table.items() if value == target)
    )
    return {"retina": retinal, **{names[target]: (target,) for target in retinal}}


def thickness_map(labels: np.ndarray, depth_spacing_mm: float, classes: tuple[int, ...]) -> np.ndarray:
    """Thickness ``[W, D]`` in µm of the voxels whose label is in ``classes`` (labels ``[H, W, D]``)."""
    inside = np.isin(labels, np.asarray(classes))
    return inside.sum(axis=0).astype(np.float64) * depth_spacing_mm * 1000.0


def thickness_maps(eye: Eye, groups: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """``{group: [W, D] µm}`` of an eye's labels for each layer group (default :data:`GROUPS`)."""
    if eye.labels is None:
        raise DataError(f"eye {eye.eye_id}: no labels, so no layer thickness")
    return {name: thickness_map(eye.labels, eye.spacing[0], classes) for name, classes in (groups or GROUPS).items()}


@dataclass(frozen=True)
class EtdrsGrid:
    """The ETDRS sector of every A-scan of an eye: ``sector [W, D]`` indexes :data:`SECTORS`
    (-1 outside the 6 mm disc); ``centre_mm`` is the fovea (along W, along D) in scan mm."""

    sector: np.ndarray
    centre_mm: tuple[float, float]


def ascan_positions_mm(eye: Eye) -> tuple[np.ndarray, np.ndarray]:
    """``x, y [W, D]``: mm along the B-scan (A-scan index x spacing) and along the slow axis."""
    _, width, _ = eye.shape
    x = np.arange(width) * eye.spacing[1]
    return np.meshgrid(x, eye.bscan_positions, indexing="ij")


def find_fovea(eye: Eye, retina_um: np.ndarray | None = None) -> tuple[float, float]:
    """The fovea in scan mm: the minimum of the smoothed total-retina thickness within
    :data:`FOVEA_SEARCH_MM` of the scan centre (the centre when there is no thickness)."""
    x, y = ascan_positions_mm(eye)
    centre = (float(x.mean()), float(y.mean()))
    if retina_um is None:
        if eye.labels is None:
            return centre
        retina_um = thickness_map(eye.labels, eye.spacing[0], GROUPS["retina"])
    sigma = (max(0.1 / eye.spacing[1], 0.5), max(0.1 / max(eye.spacing[2], 1e-6), 0.5))
    smooth = ndimage.gaussian_filter(retina_um, sigma, mode="nearest")
    near = np.hypot(x - centre[0], y - centre[1]) <= FOVEA_SEARCH_MM
    if not np.any(near & (smooth > 0)):
        return centre
    masked = np.where(near & (smooth > 0), smooth, np.inf)
    w, d = np.unravel_index(np.argmin(masked), masked.shape)
    return float(x[w, d]), float(y[w, d])


def etdrs_grid(eye: Eye, centre_mm: tuple[float, float] | None = None) -> EtdrsGrid:
    """The ETDRS sector of every A-scan of ``eye`` around ``centre_mm`` (default: :func:`find_fovea`)."""
    centre = find_fovea(eye) if centre_mm is None else centre_mm
    x, y = ascan_positions_mm(eye)
    nasal = (x - centre[0]) * (1.0 if eye.laterality == "OD" else -1.0)
    superior = -(y - centre[1])
    radius = np.hypot(nasal, superior)
    angle = np.degrees(np.arctan2(superior, nasal)) % 360.0  # 0 nasal, 90 superior, 180 temporal, 270 inferior
    quadrant = np.select(
        [(angle >= 45) & (angle < 135), (angle < 45) | (angle >= 315), (angle >= 225) & (angle < 315)],
        [0, 1, 2],
        default=3,
    )  # S, N, I, T
    inner, middle, outer = (d / 2 for d in RING_DIAMETERS_MM)
    sector = np.full(radius.shape, -1, dtype=np.int64)
    sector[radius < inner] = 0
    ring1 = (radius >= inner) & (radius < middle)
    ring2 = (radius >= middle) & (radius <= outer)
    sector[ring1] = 1 + quadrant[ring1]
    sector[ring2] = 5 + quadrant[ring2]
    return EtdrsGrid(sector, centre)


def etdrs_means(thickness_um: np.ndarray, grid: EtdrsGrid) -> dict[str, float]:
    """Mean thickness of each sector (NaN for a sector without A-scans)."""
    return {
        name: float(thickness_um[grid.sector == index].mean()) if np.any(grid.sector == index) else float("nan")
        for index, name in enumerate(SECTORS)
    }


def etdrs_table(
    eye: Eye, grid: EtdrsGrid | None = None, groups: dict[str, tuple[int, ...]] | None = None
) -> list[dict[str, object]]:
    """One row per layer group: ``{"eye_id", "group", C, S1, ..., T2}`` (µm)."""
    grid = grid or etdrs_grid(eye)
    return [
        {"eye_id": eye.eye_id, "group": name, **etdrs_means(values, grid)}
        for name, values in thickness_maps(eye, groups).items()
    ]


def etdrs_errors(
    prediction: Eye, truth: Eye, groups: dict[str, tuple[int, ...]] | None = None
) -> list[dict[str, object]]:
    """Mean absolute thickness error (µm) per ETDRS sector of ``prediction`` against ``truth``
    (same grid of A-scans), the grid centred on the truth's fovea (the thinnest point of its
    ``retina`` group when ``groups`` has one); one row per layer group."""
    if prediction.shape != truth.shape:
        raise DataError(f"eye {truth.eye_id}: prediction {prediction.shape} and truth {truth.shape} differ in shape")
    predicted, true = thickness_maps(prediction, groups), thickness_maps(truth, groups)
    grid = etdrs_grid(truth, find_fovea(truth, true["retina"]) if "retina" in true else None)
    return [
        {"eye_id": truth.eye_id, "group": name, **etdrs_means(np.abs(predicted[name] - true[name]), grid)}
        for name in true
    ]


def plot_thickness_maps(
    eye: Eye,
    path: str | Path,
    groups: tuple[str, ...] = ("retina", "RNFL", "GCL", "ONL"),
    title: str = "",
    *,
    overwrite: bool = False,
) -> Path:
    """A PNG of thickness maps (µm) with the ETDRS rings drawn around the fovea, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    maps = thickness_maps(eye, {name: GROUPS[name] for name in groups})
    grid = etdrs_grid(eye)
    x, y = ascan_positions_mm(eye)
    figure = Figure(figsize=(3.3 * len(groups), 3.4), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title or f"{eye.eye_id}: layer thickness, ETDRS rings of 1, 3, 6 mm", fontsize=10)
    for index, name in enumerate(groups):
        axis = figure.add_subplot(1, len(groups), index + 1)
        image = axis.imshow(
            maps[name].T,
            cmap="viridis",
            aspect="equal",
            interpolation="nearest",
            extent=(float(x.min()), float(x.max()), float(y.max()), float(y.min())),
        )
        for diameter in RING_DIAMETERS_MM:
            axis.add_patch(Circle(grid.centre_mm, diameter / 2, fill=False, color="white", lw=0.8))
        axis.set(title=f"{name} (µm)", xlabel="along the B-scan (mm)")
        figure.colorbar(image, ax=axis, fraction=0.046)
    return atomic_save(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110), overwrite=overwrite)


def write_thickness_outputs(eye: Eye, out_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    """``<eye>_etdrs.csv`` (sector means of every layer group), ``<eye>_retina_thickness.nii.gz``
    (the total-retina map ``[W, D]`` in µm) and ``<eye>_thickness.png`` into ``out_dir``."""
    from retina_data.nifti import write_nifti

    out_dir = Path(out_dir)
    rows = etdrs_table(eye)
    lines = [",".join(["eye_id", "group", *SECTORS])]
    lines += [",".join([str(row["eye_id"]), str(row["group"]), *(f"{row[s]:.2f}" for s in SECTORS)]) for row in rows]
    table = atomic_write_text(refuse_existing(out_dir / f"{eye.eye_id}_etdrs.csv", overwrite), "\n".join(lines) + "\n")
    retina = thickness_maps(eye, {"retina": GROUPS["retina"]})["retina"].astype(np.float32)
    nifti = write_nifti(
        out_dir / f"{eye.eye_id}_retina_thickness.nii.gz",
        retina,
        eye.spacing[1:],
        eye.bscan_positions,
        {"unit": "um", "what": "total retinal thickness (ILM to BM)"},
        overwrite=overwrite,
    )
    figure = plot_thickness_maps(eye, out_dir / f"{eye.eye_id}_thickness.png", overwrite=overwrite)
    return [table, nifti, figure]
