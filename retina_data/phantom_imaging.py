"""How the phantom's scanner sees its anatomy: OCT volumes and the SLO fundus image.

OCT: rendered as the scanner records it, before flattening (the layers follow the eye's
tilted, curved Bruch's membrane). Each class has a display-scale reflectivity (bright RNFL,
EZ and RPE; dark ONL and vitreous); every voxel integrates the reflectivity of the layers
it overlaps (partial volume, so thin layers stay visible at any depth sampling); the
choroid fades with depth below Bruch's membrane and holds dark vessel lumens. Vessels add
a bright cross-section at the level of the ganglion cell layer and a shadow in everything
below them. The signal is then converted to linear intensity, attenuated with depth below
the ILM and with depth below the top of the scan (system roll-off), scaled by a per-B-scan
gain, multiplied by speckle (gamma distributed, ``looks`` averaged), added to an
exponential noise floor, log-compressed again, cut at the mean noise floor and normalised
to ``[0, 1]`` B-scan by B-scan (:func:`retina_data.preprocessing.normalize_bscans`), as
the reference preprocessing does. Flattening is left to the caller.

SLO: a fundus background with smooth brightness variations, a slightly darker macula
and vignetting; vessels are dark; additive noise; normalised to ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retina_data.labels import FLUID_LABEL
from retina_data.phantom_anatomy import Fovea, Geometry
from retina_data.preprocessing import normalize_bscans

REFLECTIVITY = np.array(
    [
        0.0,  # 0 vitreous
        0.80,  # 1 RNFL
        0.45,  # 2 GCL
        0.62,  # 3 IPL
        0.28,  # 4 INL
        0.60,  # 5 OPL
        0.12,  # 6 ONL
        0.30,  # 7 IS
        0.90,  # 8 EZ
        0.42,  # 9 OS
        0.72,  # 10 IZ
        0.96,  # 11 RPE
        0.66,  # 12 choroid (just below BM; fades with depth)
        0.06,  # 13 subretinal fluid
    ]
)
"""Display-scale reflectivity of each label (0 = far below the noise floor, 1 = brightest)."""

ELM_REFLECTIVITY = 0.55
ELM_THICKNESS_MM = 0.005
VESSEL_REFLECTIVITY = 0.85
CHOROID_DECAY_MM = 0.13
"""Choroid brightness falls by 1/e over this depth below Bruch's membrane."""
CHORIOCAPILLARIS_MM = 0.03
"""Lumens of large choroidal vessels appear only below this bright layer under Bruch's membrane."""

CHUNK_VOXELS = 4_000_000
"""B-scans are rendered in groups of about this many voxels to bound memory."""


@dataclass(frozen=True)
class ChoroidTexture:
    """Choroidal vessel lumens: where a smooth random 3-D field is high, the choroid is dark.

    Attributes:
        frequencies: angular wave vectors ``[K, 3]`` (depth, x, y) in rad/mm.
        phases: ``[K]`` in rad.
    """

    frequencies: np.ndarray
    phases: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n_waves: int = 12) -> ChoroidTexture:
        """Waves of 0.2 .. 0.8 mm wavelength in random directions; lumens three times flatter in depth."""
        direction = rng.normal(size=(n_waves, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        wavelength = rng.uniform(0.2, 0.8, n_waves)
        frequencies = (2.0 * np.pi / wavelength)[:, None] * direction * np.array([3.0, 1.0, 1.0])
        return cls(frequencies, rng.uniform(0.0, 2.0 * np.pi, n_waves))

    def lumens(self, depth: np.ndarray, bm_mm: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Lumen weight ``[n, W, D]`` in ``[0, 1]`` at depths ``[n]`` under A-scans at ``x, y [W, D]`` (mm).

        The texture moves with Bruch's membrane, which lies at ``bm_mm [W, D]`` in each A-scan.
        """
        field = np.zeros((depth.size, *x.shape), np.float32)
        for (f_depth, f_x, f_y), phase in zip(self.frequencies, self.phases):
            along = (f_depth * depth).astype(np.float32)[:, None, None]
            across = (f_x * x + f_y * y - f_depth * bm_mm + phase).astype(np.float32)[None]
            field += np.cos(along) * np.cos(across) - np.sin(along) * np.sin(across)
        return 1.0 / (1.0 + np.exp(-(field / np.float32(np.sqrt(len(self.phases) / 2)) - 0.8) / 0.2))


@dataclass(frozen=True)
class OctOptics:
    """Acquisition parameters of one OCT volume.

    Attributes:
        dynamic_range_db: display dynamic range of the log compression.
        attenuation_per_mm: tissue attenuation coefficient (1/mm), applied twice (there and back).
        rolloff_mm: depth below the top of the scan over which the sensitivity falls by 1/e.
        speckle_looks: gamma shape of the speckle (1 = fully developed speckle).
        noise_floor: display-scale level of the noise floor.
        vessel_shadow: fraction of the light blocked by the centre of a large vessel; the
            shadow of a thinner or partly hit vessel scales with its path length through it.
    """

    dynamic_range_db: float
    attenuation_per_mm: float
    rolloff_mm: float
    speckle_looks: int
    noise_floor: float
    vessel_shadow: float

    @property
    def log_scale(self) -> float:
        """Natural-log units per unit of display scale."""
        return self.dynamic_range_db / 10.0 * np.log(10.0)


def _breakpoints(geometry: Geometry, reflectivity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depths ``[K, W, D]`` where the reflectivity changes and the value below each ``[K]``."""
    b = geometry.boundaries_mm
    elm_end = np.minimum(b[6] + ELM_THICKNESS_MM, 0.5 * (b[6] + b[7]))
    depths = [*b[:7], elm_end, *b[7:11], geometry.rpe_top_mm, b[11]]
    below = [
        *reflectivity[1:7],
        ELM_REFLECTIVITY,
        *reflectivity[7:11],
        reflectivity[FLUID_LABEL],
        reflectivity[11],
        reflectivity[12],
    ]
    return np.stack(depths), np.asarray(below)


def layer_reflectivity(geometry: Geometry, reflectivity: np.ndarray, row_edges_mm: np.ndarray) -> np.ndarray:
    """Noise-free display-scale reflectivity ``[H, W, D]`` averaged over each voxel.

    ``row_edges_mm [H + 1]`` are the depths of the evenly spaced voxel edges. The
    reflectivity is a sum of steps in depth; a step at a fraction ``f`` of the way down
    voxel ``i`` adds ``1 - f`` of its height to voxel ``i`` and all of it to the voxels
    below, so the partial-volume values are the running sum down each A-scan of two
    increments per step and A-scan.
    """
    depths, below = _breakpoints(geometry, reflectivity)
    steps = np.diff(np.concatenate([[reflectivity[0]], below]))
    height = row_edges_mm.size - 1
    columns = depths.shape[1] * depths.shape[2]
    position = np.clip((depths - row_edges_mm[0]) / (row_edges_mm[1] - row_edges_mm[0]), 0.0, height)
    row = np.floor(position)
    fraction = position - row
    flat = row.astype(np.int64).reshape(len(steps), columns) * columns + np.arange(columns)
    increments = np.bincount(
        np.concatenate([flat.ravel(), (flat + columns).ravel()]),
        np.concatenate(
            [
                (steps[:, None] * (1.0 - fraction.reshape(len(steps), columns))).ravel(),
                (steps[:, None] * fraction.reshape(len(steps), columns)).ravel(),
            ]
        ),
        minlength=(height + 2) * columns,
    )
    display = increments[: height * columns].reshape(height, *depths.shape[1:]).astype(np.float32)
    display[0] += np.float32(reflectivity[0])
    for row in range(1, height):  # row by row: far faster than np.cumsum along the first axis
        display[row] += display[row - 1]
    return display


def render_oct(
    geometry: Geometry,
    reflectivity: np.ndarray,
    row_edges_mm: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    choroid: ChoroidTexture,
    vessel_strength: np.ndarray,
    vessel_radius: np.ndarray,
    gain: np.ndarray,
    optics: OctOptics,
    rng: np.random.Generator,
) -> np.ndarray:
    """The OCT volume ``[H, W, D]`` float32 in ``[0, 1]``, as scanned (not flattened).

    Args:
        geometry: layer boundaries on the ``[W, D]`` grid, at their depths in the scan.
        reflectivity: display-scale reflectivity per label ``[14]``.
        row_edges_mm: voxel edge depths ``[H + 1]`` (mm below the top of the scan).
        x, y: scan coordinates of the A-scans ``[W, D]`` (mm).
        choroid: where the choroid's vessel lumens are.
        vessel_strength, vessel_radius: en-face vessel maps ``[W, D]`` (see
            :func:`retina_data.phantom_vessels.vessel_maps`).
        gain: per-B-scan linear gain ``[D]``.
        optics: acquisition parameters.
        rng: source of speckle and noise.
    """
    height = row_edges_mm.size - 1
    width, depth = geometry.rpe_top_mm.shape
    step = max(1, CHUNK_VOXELS // (height * width))
    out = np.empty((height, width, depth), np.float32)
    for start in range(0, depth, step):
        part = slice(start, min(start + step, depth))
        out[:, :, part] = _render_chunk(
            geometry.select(part),
            reflectivity,
            row_edges_mm,
            x[:, part],
            y[:, part],
            choroid,
            vessel_strength[:, part],
            vessel_radius[:, part],
            gain[part],
            optics,
            rng,
        )
    return out


def _choroid_fading(
    rows: np.ndarray, bm_mm: np.ndarray, x: np.ndarray, y: np.ndarray, choroid: ChoroidTexture
) -> np.ndarray:
    """Factor ``[n, W, d]`` (1 above BM) on the rows at depths ``rows [n]`` reaching below ``bm_mm [W, d]``.

    Below BM the choroid fades as ``exp(-below / CHOROID_DECAY_MM)``, written as a product of
    a per-row and a per-A-scan factor so that no exponential of the whole volume is needed.
    """
    top = np.float32(bm_mm.min())
    bm = bm_mm.astype(np.float32)
    below = rows[:, None, None] - bm[None]
    fading = (
        np.exp(-(rows - top) / np.float32(CHOROID_DECAY_MM))[:, None, None]
        * np.exp((bm - top) / np.float32(CHOROID_DECAY_MM))[None]
    )
    lumens = choroid.lumens(rows, bm_mm, x, y) * np.clip(below / np.float32(CHORIOCAPILLARIS_MM), 0.0, 1.0)
    return np.minimum(fading, 1.0) * (1.0 - 0.6 * lumens)


def _render_chunk(
    geometry: Geometry,
    reflectivity: np.ndarray,
    row_edges_mm: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    choroid: ChoroidTexture,
    vessel_strength: np.ndarray,
    vessel_radius: np.ndarray,
    gain: np.ndarray,
    optics: OctOptics,
    rng: np.random.Generator,
) -> np.ndarray:
    """:func:`render_oct` for a few B-scans ``[H, W, d]``."""
    scale = optics.log_scale
    rows = (0.5 * (row_edges_mm[1:] + row_edges_mm[:-1])).astype(np.float32)[:, None, None]
    display = layer_reflectivity(geometry, reflectivity, row_edges_mm)
    deep = int(np.searchsorted(rows[:, 0, 0], geometry.bm_mm.min(), side="right"))
    display[deep:] *= _choroid_fading(rows[deep:, 0, 0], geometry.bm_mm, x, y, choroid)

    columns = np.nonzero(vessel_strength > 0.02)
    strength = vessel_strength[columns].astype(np.float32)
    radius = vessel_radius[columns].astype(np.float32)
    b = geometry.boundaries_mm
    centre = np.maximum(0.5 * (b[1] + b[2])[columns], b[0][columns] + 0.7 * radius).astype(np.float32)
    offset = (rows[:, :, 0] - centre) / radius
    blob = strength * np.exp(-2.0 * offset**2)
    display[:, columns[0], columns[1]] += (VESSEL_REFLECTIVITY - display[:, columns[0], columns[1]]) * blob

    depth_in_tissue = np.maximum(rows - b[0][None].astype(np.float32), 0.0)
    linear = np.exp(
        np.float32(scale) * (display - 1.0)
        - np.float32(2.0 * optics.attenuation_per_mm) * depth_in_tissue
        - rows / np.float32(optics.rolloff_mm)
    )
    calibre = np.minimum(1.0, radius / 0.05) ** 0.5
    below = 1.0 / (1.0 + np.exp(-3.0 * np.clip(offset, -20.0, 20.0)))
    shadow = np.float32(1.0 - optics.vessel_shadow) ** (strength * calibre * below)
    linear[:, columns[0], columns[1]] *= shadow
    linear *= gain.astype(np.float32)[None, None, :]
    linear *= rng.standard_gamma(optics.speckle_looks, linear.shape, dtype=np.float32) / optics.speckle_looks
    floor = np.float32(np.exp(scale * (optics.noise_floor - 1.0)))
    linear += floor * rng.standard_exponential(linear.shape, dtype=np.float32)
    above_floor = np.maximum(1.0 + np.log(linear) / np.float32(scale) - np.float32(optics.noise_floor), 0.0)
    return normalize_bscans(above_floor, "percentile", (0.0, 99.9))


def render_slo(
    x: np.ndarray,
    y: np.ndarray,
    nasal: np.ndarray,
    superior: np.ndarray,
    fovea: Fovea,
    background: np.ndarray,
    vessel_strength: np.ndarray,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """The SLO image ``[W, D]`` float32 in ``[0, 1]``.

    Args:
        x, y: scan coordinates of the grid ``[W, D]`` (mm from the scan centre).
        nasal, superior: anatomical coordinates of the grid ``[W, D]``.
        fovea: darkens the macula slightly.
        background: smooth unit-variance fundus texture ``[W, D]``.
        vessel_strength: en-face vessel map ``[W, D]`` in ``[0, 1]``.
        noise: standard deviation of the additive noise (before normalisation).
        rng: source of the noise.
    """
    corner = np.hypot(np.abs(x).max(), np.abs(y).max())
    vignette = 1.0 - 0.2 * (np.hypot(x, y) / max(corner, 1e-6)) ** 2
    fundus = 0.6 * (1.0 + 0.07 * background) * vignette * (1.0 - 0.15 * fovea.profile(nasal, superior, 2.5))
    image = fundus * (1.0 - 0.65 * vessel_strength) + rng.normal(0.0, noise, x.shape)
    low, high = np.percentile(image, [0.1, 99.9])
    return np.clip((image - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)
