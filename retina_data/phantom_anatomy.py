"""Layer geometry of the retina phantom: twelve smooth boundaries above a flat Bruch's membrane.

Everything here is a function of *anatomical* en-face coordinates relative to the fovea,
``nasal`` and ``superior`` (mm), so that the right and left eye of a subject are mirror
images of each other: an eye maps its scan grid to these coordinates with its own
laterality (see :func:`anatomical_coordinates`).

Depths are in mm below the top of the scan. The layers are stacked on a flat Bruch's
membrane (BM) at ``bm_depth_mm``, the depth it has after flattening;
:meth:`Geometry.shifted` moves every A-scan to where it lay before flattening (the eye's
tilt and curvature). Layer thicknesses follow published normal values of the macula
(approximately): the inner layers vanish in the foveal pit, the outer nuclear layer and
the photoreceptor segments thicken there, the nerve fibre layer thickens towards the optic
disc (nasally) and along the arcades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retina_data.labels import BOUNDARY_NAMES, FLUID_LABEL, NUM_LAYER_CLASSES

NUM_BOUNDARIES = len(BOUNDARY_NAMES)
RETINA_LAYERS = NUM_LAYER_CLASSES - 2
"""Classes with a thickness: RNFL (1) .. RPE (11)."""

INNER_LAYERS = 5
"""RNFL, GCL, IPL, INL and OPL: the layers displaced from the foveal pit."""

PARAFOVEAL_RADIUS_MM = 1.1
"""Where the ganglion cell complex is thickest (the parafoveal ring)."""


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field on the en-face plane: a sum of a few long plane waves.

    Attributes:
        frequencies: angular wave vectors ``[K, 2]`` in rad/mm (nasal, superior).
        phases: ``[K]`` in rad.
        amplitudes: ``[K]``, scaled so that the field has unit standard deviation.
    """

    frequencies: np.ndarray
    phases: np.ndarray
    amplitudes: np.ndarray

    @classmethod
    def draw(
        cls, rng: np.random.Generator, n_waves: int = 5, wavelength_mm: tuple[float, float] = (3.0, 14.0)
    ) -> SmoothField:
        """Waves with random direction and phase and wavelengths in ``wavelength_mm``."""
        angle = rng.uniform(0.0, 2.0 * np.pi, n_waves)
        wavelength = rng.uniform(*wavelength_mm, n_waves)
        frequencies = (2.0 * np.pi / wavelength)[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
        amplitudes = rng.uniform(0.5, 1.0, n_waves)
        amplitudes *= np.sqrt(2.0 / np.sum(amplitudes**2))
        return cls(frequencies, rng.uniform(0.0, 2.0 * np.pi, n_waves), amplitudes)

    def __call__(self, nasal: np.ndarray, superior: np.ndarray) -> np.ndarray:
        """Field values at the points ``nasal``, ``superior`` (any equal shapes, mm)."""
        phase = nasal[..., None] * self.frequencies[:, 0] + superior[..., None] * self.frequencies[:, 1] + self.phases
        return np.sum(self.amplitudes * np.cos(phase), axis=-1)


@dataclass(frozen=True)
class Fovea:
    """The foveal pit of one eye.

    Attributes:
        centre_mm: ``(x, y)`` position in scan coordinates (mm from the scan centre along
            the B-scan and along the slow axis).
        width_mm: standard deviation of the Gaussian pit profile.
        depth: fraction of the inner layers displaced at the centre (1 = all of them).
        onl_gain_um: extra thickness of the outer nuclear layer at the centre (µm).
    """

    centre_mm: tuple[float, float]
    width_mm: float
    depth: float
    onl_gain_um: float

    def profile(self, nasal: np.ndarray, superior: np.ndarray, widen: float = 1.0) -> np.ndarray:
        """Pit profile in ``[0, 1]`` (1 at the centre), optionally widened."""
        radius2 = nasal**2 + superior**2
        return np.exp(-0.5 * radius2 / (self.width_mm * widen) ** 2)


@dataclass(frozen=True)
class FluidDome:
    """A dome of subretinal fluid between the photoreceptors and the RPE.

    Attributes:
        centre_mm: ``(x, y)`` scan position of the dome's apex (mm).
        radius_mm: en-face radius of the detachment.
        height_mm: height of the apex above the RPE.
    """

    centre_mm: tuple[float, float]
    radius_mm: float
    height_mm: float

    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Fluid height (mm) at scan points ``x``, ``y``; zero outside the dome."""
        rho2 = ((x - self.centre_mm[0]) ** 2 + (y - self.centre_mm[1]) ** 2) / self.radius_mm**2
        return self.height_mm * np.clip(1.0 - rho2, 0.0, None) ** 1.5


@dataclass(frozen=True)
class Geometry:
    """Layer boundaries of one eye on its en-face grid.

    Attributes:
        boundaries_mm: depth of each boundary ``[12, W, D]`` (ILM .. BM, top to bottom), mm
            below the top of the scan. With fluid, the IZ/RPE boundary (index 10) is the
            lifted lower surface of the interdigitation zone.
        rpe_top_mm: top of the RPE ``[W, D]``; fluid fills ``boundaries_mm[10] .. rpe_top_mm``.
    """

    boundaries_mm: np.ndarray
    rpe_top_mm: np.ndarray

    @property
    def bm_mm(self) -> np.ndarray:
        """Depth of Bruch's membrane ``[W, D]``."""
        return self.boundaries_mm[-1]

    def shifted(self, offset_mm: np.ndarray) -> Geometry:
        """The same layers with every A-scan moved ``offset_mm [W, D]`` deeper."""
        return Geometry(self.boundaries_mm + offset_mm, self.rpe_top_mm + offset_mm)

    def select(self, bscans: slice) -> Geometry:
        """The layers of the B-scans ``bscans`` only."""
        return Geometry(self.boundaries_mm[:, :, bscans], self.rpe_top_mm[:, bscans])


def anatomical_coordinates(
    x: np.ndarray, y: np.ndarray, fovea_mm: tuple[float, float], side: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(nasal, superior)`` mm relative to the fovea for scan points ``x``, ``y``.

    ``side`` is +1 for a right eye (the optic disc lies towards +x, as seen on a fundus
    photograph) and -1 for a left eye; superior is towards -y for both.
    """
    return side * (x - fovea_mm[0]), -(y - fovea_mm[1])


def layer_thicknesses_mm(
    nasal: np.ndarray, superior: np.ndarray, fovea: Fovea, variation: np.ndarray, scale: float
) -> np.ndarray:
    """Thickness of the classes RNFL .. RPE ``[11, *grid]`` in mm.

    Args:
        nasal, superior: anatomical coordinates ``[*grid]`` (mm from the fovea).
        fovea: the pit that thins the inner layers and thickens the outer ones.
        variation: smooth per-layer log-thickness fields ``[11, *grid]`` (a few percent).
        scale: the eye's overall thickness factor.
    """
    radius = np.hypot(nasal, superior)
    pit = fovea.profile(nasal, superior)
    ring = np.exp(-0.5 * ((radius - PARAFOVEAL_RADIUS_MM) / 0.6) ** 2)
    towards_disc = 1.0 / (1.0 + np.exp(-(nasal - 0.5) / 0.7))
    arcades = np.exp(-0.5 * ((np.abs(superior) - 2.0) / 0.8) ** 2) * (1.0 - 0.5 * towards_disc)
    rnfl = (8.0 + 30.0 * towards_disc + 16.0 * arcades) * (1.0 - fovea.profile(nasal, superior, 1.8))
    inner_loss = 1.0 - fovea.depth * pit
    flat = np.ones_like(pit)
    microns = np.stack(
        [
            rnfl,
            (28.0 + 26.0 * ring) * inner_loss,  # GCL
            (26.0 + 12.0 * ring) * inner_loss,  # IPL
            (26.0 + 12.0 * ring) * inner_loss,  # INL
            (20.0 + 7.0 * ring) * (1.0 - 0.85 * fovea.depth * pit),  # OPL
            62.0 + fovea.onl_gain_um * pit,  # ONL
            24.0 + 8.0 * pit,  # IS (ELM to EZ)
            14.0 * flat,  # EZ
            24.0 + 12.0 * pit,  # OS
            10.0 * flat,  # IZ
            18.0 * flat,  # RPE
        ]
    )
    return microns * np.exp(variation) * scale * 1e-3


def layer_geometry(thickness_mm: np.ndarray, bm_depth_mm: float, fluid_mm: np.ndarray | None = None) -> Geometry:
    """Stack the layers ``thickness_mm [11, W, D]`` (RNFL .. RPE) on a flat BM.

    ``fluid_mm [W, D]`` (optional) lifts every boundary above the RPE by the fluid height.
    """
    heights = np.cumsum(thickness_mm[::-1], axis=0)[::-1]  # [11]: height of ILM .. IZ/RPE above BM
    depths = bm_depth_mm - heights
    rpe_top = depths[-1].copy()
    if fluid_mm is not None:
        depths = depths - fluid_mm
    bm = np.full((1, *depths.shape[1:]), bm_depth_mm)
    return Geometry(boundaries_mm=np.concatenate([depths, bm]), rpe_top_mm=rpe_top)


def first_rows_below(depth_mm: np.ndarray, row_centres_mm: np.ndarray) -> np.ndarray:
    """Index ``[*grid]`` of the first row whose centre lies below ``depth_mm [*grid]`` (``H`` if none).

    For a boundary's depth this is the row where :func:`label_volume` starts the class below it.
    """
    return np.searchsorted(row_centres_mm, depth_mm, side="right")


def label_volume(geometry: Geometry, row_centres_mm: np.ndarray) -> np.ndarray:
    """Labels ``[H, W, D]`` uint8 for rows at depths ``row_centres_mm [H]``.

    A voxel takes the class of the layer that holds its centre: the number of boundaries
    above it (0 = vitreous .. 12 = choroid), or :data:`FLUID_LABEL` inside the fluid.
    """
    depth = row_centres_mm[:, None, None]
    labels = np.zeros((row_centres_mm.size, *geometry.rpe_top_mm.shape), dtype=np.uint8)
    for boundary in geometry.boundaries_mm:
        labels += depth > boundary[None]
    fluid = (depth > geometry.boundaries_mm[10][None]) & (depth <= geometry.rpe_top_mm[None])
    labels[fluid] = FLUID_LABEL
    return labels
