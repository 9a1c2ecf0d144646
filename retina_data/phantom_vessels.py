"""The retinal vessel tree of the phantom and its en-face maps.

Vessels leave the optic disc (nasal to the scan), two arcades (an artery and a vein each)
curve around the fovea above and below it, macular branches of the arcades run towards the
horizontal meridian, and a few small vessels run straight from the disc towards the fovea. Every vessel branches recursively into thinner, shorter, smoothly curving
children, which stop at the foveal avascular zone. Like the layers, the tree lives in
anatomical coordinates (``nasal``, ``superior``, mm from the fovea), so the two eyes of a
subject share the arcade layout (drawn per subject) and differ in their branches (drawn per
eye).

Because the vessels run obliquely to the B-scans, each B-scan cuts them at different
places: the en-face maps (:func:`vessel_maps`) are what both the SLO and the OCT shadows
are rendered from, so the dense SLO tells where the vessels are between sparse B-scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

SAMPLE_STEP_MM = 0.01
"""Spacing of the centre-line samples."""

FOVEAL_AVASCULAR_RADIUS_MM = 0.3
"""Vessels end where they reach this distance from the foveal centre."""

REACH_MM = 6.0
"""Vessels end beyond this distance from the fovea along either axis (outside any scan)."""

MIN_RADIUS_MM = 0.01
"""Thinner vessels are not grown."""


@dataclass(frozen=True)
class VesselTree:
    """Centre-line samples of every vessel of one eye.

    Attributes:
        points_mm: sample positions ``[P, 2]`` as (nasal, superior), mm from the fovea.
        radius_mm: vessel radius at each sample ``[P]``.
    """

    points_mm: np.ndarray
    radius_mm: np.ndarray


@dataclass(frozen=True)
class ArcadeLayout:
    """The main vessels of a subject, shared by both eyes.

    Attributes:
        disc_mm: optic disc centre (nasal, superior), mm from the fovea.
        radii_mm: distance from the fovea at which each main arcade passes it ``[4]``
            (superior artery, superior vein, inferior artery, inferior vein).
        root_radius_mm: calibre of each main arcade at the disc ``[4]``.
        wiggle_phase: phase of the gentle meander of each arcade ``[4]``.
    """

    disc_mm: tuple[float, float]
    radii_mm: np.ndarray
    root_radius_mm: np.ndarray
    wiggle_phase: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ArcadeLayout:
        """A random but typical layout: disc 3.6-4.4 mm nasal, arcades at 1.8-2.8 mm."""
        disc = (float(rng.uniform(3.6, 4.4)), float(rng.uniform(0.2, 0.6)))
        radii = np.sort(rng.uniform(1.8, 2.8, 4).reshape(2, 2), axis=1).ravel()
        root = np.tile([0.05, 0.065], 2) * rng.uniform(0.9, 1.1, 4)
        return cls(disc, radii, root, rng.uniform(0.0, 2.0 * np.pi, 4))


def _arcade_path(layout: ArcadeLayout, index: int) -> np.ndarray:
    """Centre line ``[N, 2]`` of main arcade ``index``: from the disc around the fovea."""
    direction = 1.0 if index < 2 else -1.0
    theta = np.linspace(0.0, 2.3, 1200)
    radius = (
        layout.radii_mm[index]
        + 0.8 * np.clip(theta - np.pi / 2, 0.0, None)
        + 0.08 * np.sin(3.0 * theta + layout.wiggle_phase[index])
    )
    around = np.stack([radius * np.cos(theta), direction * radius * np.sin(theta)], axis=1)
    blend = np.clip(theta / 0.9, 0.0, 1.0)
    blend = (blend * blend * (3.0 - 2.0 * blend))[:, None]
    return (1.0 - blend) * np.asarray(layout.disc_mm) + blend * around


def _resample(path: np.ndarray, step: float) -> np.ndarray:
    """Points ``[M, 2]`` at equal arc length ``step`` along the polyline ``path [N, 2]``."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    at = np.arange(0.0, arc[-1], step)
    return np.stack([np.interp(at, arc, path[:, 0]), np.interp(at, arc, path[:, 1])], axis=1)


def _clip_to_retina(path: np.ndarray) -> np.ndarray:
    """The part of ``path [N, 2]`` before it enters the avascular zone or leaves the reach."""
    outside = (np.hypot(path[:, 0], path[:, 1]) < FOVEAL_AVASCULAR_RADIUS_MM) | np.any(np.abs(path) > REACH_MM, axis=1)
    stop = int(np.argmax(outside)) if outside.any() else path.shape[0]
    return path[:stop]


def _curving_path(rng: np.random.Generator, start: np.ndarray, heading: float, length: float) -> np.ndarray:
    """A smoothly meandering centre line ``[N, 2]`` of ``length`` mm from ``start``."""
    arc = np.arange(0.0, length, SAMPLE_STEP_MM)
    bends = rng.normal(0.0, 0.3 / np.arange(1, 4))
    angle = heading + np.sum(bends[:, None] * np.sin(np.pi * np.arange(1, 4)[:, None] * arc / length), axis=0)
    steps = SAMPLE_STEP_MM * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return start + np.cumsum(steps, axis=0) - steps[0]


def _grow(
    rng: np.random.Generator,
    path: np.ndarray,
    radius0: float,
    level: int,
    max_level: int,
    points: list[np.ndarray],
    radii: list[np.ndarray],
) -> None:
    """Add the vessel ``path [N, 2]`` (tapering from ``radius0``) and, recursively, its branches."""
    path = _clip_to_retina(path)
    if path.shape[0] < 2:
        return
    taper = radius0 * (1.0 - 0.35 * np.linspace(0.0, 1.0, path.shape[0]))
    points.append(path)
    radii.append(taper)
    if level >= max_level:
        return
    length = path.shape[0] * SAMPLE_STEP_MM
    heading = np.arctan2(*np.gradient(path, axis=0)[:, ::-1].T)
    at = 0.3 + np.cumsum(rng.uniform(0.7, 1.5, int(length / 0.7) + 1))
    for position in at[at < length - 0.2]:
        i = int(position / SAMPLE_STEP_MM)
        radius = taper[i] * rng.uniform(0.55, 0.75)
        if radius < MIN_RADIUS_MM:
            continue
        angle = heading[i] + rng.choice([-1.0, 1.0]) * rng.uniform(0.45, 1.0)
        child_length = rng.uniform(1.0, 3.0) * 0.7**level
        child = _curving_path(rng, path[i], float(angle), child_length)
        _grow(rng, child, radius, level + 1, max_level, points, radii)


def grow_tree(layout: ArcadeLayout, rng: np.random.Generator, max_level: int = 3) -> VesselTree:
    """The eye's whole tree: the subject's arcades plus branches drawn from ``rng``."""
    points: list[np.ndarray] = []
    radii: list[np.ndarray] = []
    for index in range(4):
        arcade = _resample(_arcade_path(layout, index), SAMPLE_STEP_MM)
        _grow(rng, arcade, float(layout.root_radius_mm[index]), 0, max_level, points, radii)
        for start in arcade[rng.integers(arcade.shape[0] // 4, 3 * arcade.shape[0] // 4, 2)]:
            target = np.array([rng.uniform(-2.5, 2.5), rng.uniform(-0.5, 0.5)])
            towards = target - start
            path = _curving_path(
                rng,
                start,
                float(np.arctan2(towards[1], towards[0])),
                float(np.linalg.norm(towards)) * rng.uniform(1.0, 1.5),
            )
            _grow(rng, path, rng.uniform(0.025, 0.035), 2, max_level, points, radii)
    disc = np.asarray(layout.disc_mm)
    for heading in np.pi + np.linspace(-0.5, 0.5, int(rng.integers(2, 5))) + rng.uniform(-0.15, 0.15):
        path = _curving_path(rng, disc, float(heading), rng.uniform(3.0, 4.5))
        _grow(rng, path, rng.uniform(0.025, 0.035), 1, max_level, points, radii)
    return VesselTree(np.concatenate(points), np.concatenate(radii))


def vessel_maps(
    tree: VesselTree, nasal: np.ndarray, superior: np.ndarray, pixel_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """En-face vessel strength and calibre on a grid.

    Each vessel has a Gaussian cross-section widened by the pixel footprint (so thin
    vessels stay visible, with less contrast, on coarse grids); where vessels overlap the
    strongest wins.

    Args:
        tree: the eye's vessels.
        nasal, superior: anatomical coordinates of the grid points ``[W, D]`` (mm).
        pixel_mm: en-face pixel size (mm).

    Returns:
        ``strength [W, D]`` in ``[0, 1]`` (1 = on the centre line of a vessel much wider than
        a pixel) and ``radius [W, D]`` (mm, radius of the strongest vessel; 0 far from any).
    """
    grid = np.stack([nasal.ravel(), superior.ravel()], axis=1)
    neighbours = min(6, tree.radius_mm.size)
    effective = np.sqrt(tree.radius_mm**2 + (0.5 * pixel_mm) ** 2)
    distance, index = cKDTree(tree.points_mm).query(
        grid, k=neighbours, distance_upper_bound=3.0 * float(effective.max())
    )
    distance = np.asarray(distance).reshape(grid.shape[0], neighbours)
    index = np.minimum(np.asarray(index).reshape(grid.shape[0], neighbours), tree.radius_mm.size - 1)
    width = effective[index]
    strength = np.where(
        np.isfinite(distance), tree.radius_mm[index] / width * np.exp(-2.0 * (distance / width) ** 2), 0.0
    )
    best = np.argmax(strength, axis=1)
    rows = np.arange(grid.shape[0])
    radius = np.where(strength[rows, best] > 0.0, tree.radius_mm[index[rows, best]], 0.0)
    return strength[rows, best].reshape(nasal.shape), radius.reshape(nasal.shape)
