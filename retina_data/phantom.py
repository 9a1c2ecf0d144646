"""The retina phantom: a seeded population of OCT eyes with dense ground truth.

Every eye has twelve smooth layer boundaries above Bruch's membrane (13 classes), a
foveal pit, a branching vessel tree that is dark in the SLO and shadows the OCT, speckle
and noise, and optionally a dome of subretinal fluid (label 13). The two eyes of a subject
are mirror images of each other (the same subject anatomy, seen from the other side) with
small differences.

Each eye is scanned with its own tilt and curvature (Bruch's membrane on a tilted
paraboloid) and then flattened at Bruch's membrane with
:func:`retina_data.preprocessing.flatten_at_bm`, by whole rows per A-scan as the reference
preprocessing does: the stored volume has Bruch's membrane on one row, and the shifted
A-scans keep the empty fill at the image edges and the depth-dependent signal of the scan.
See :mod:`retina_data.phantom_anatomy`, :mod:`retina_data.phantom_vessels` and
:mod:`retina_data.phantom_imaging` for the parts.

Determinism: every random part of an eye has its own generator seeded by
``(seed, subject, eye, part)``, so one eye can be generated alone, and the healthy anatomy
of an eye does not change when the pathology switch or the noise settings do.

Example::

    cfg = PhantomConfig(n_subjects=4)
    eye = make_eye(cfg, 0, "OD")          # sub001_OD
    write_phantom("data/phantom", cfg)    # the whole population as a NIfTI tree
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from retina_data.config import to_dict
from retina_data.errors import ConfigError, DataError, OutputExistsError
from retina_data.eye import LATERALITIES, Eye
from retina_data.files import staged_folder
from retina_data.memory import machine_memory_bytes
from retina_data.phantom_anatomy import (
    RETINA_LAYERS,
    FluidDome,
    Fovea,
    SmoothField,
    anatomical_coordinates,
    first_rows_below,
    label_volume,
    layer_geometry,
    layer_thicknesses_mm,
)
from retina_data.phantom_imaging import REFLECTIVITY, ChoroidTexture, OctOptics, render_oct, render_slo
from retina_data.phantom_vessels import ArcadeLayout, grow_tree, vessel_maps
from retina_data.preprocessing import flatten_at_bm
from retina_data.tree import DATASET_FILE, read_dataset_info, write_dataset_info, write_eye

PHANTOM_VERSION = 2
PAPER_SHAPE = (230, 496, 512)

_SUBJECT, _EYE_CODE = 0, {"OD": 1, "OS": 2}
_ANATOMY, _VESSELS, _FLUID, _NOISE, _SELECTION = range(5)


PHANTOM_BYTES_PER_VOXEL = 64
"""Peak memory of building one eye, per voxel (measured: 64 B at 256 x 128 x 64)."""


@dataclass
class PhantomConfig:
    """Settings of a phantom population.

    Attributes:
        n_subjects: number of subjects; each has a right (OD) and a left (OS) eye.
        shape: volume shape ``(H, W, D)``: samples per A-scan, A-scans per B-scan, B-scans.
        extent_mm: physical size of the volume along ``(H, W, D)``; the default is a
            0.89 mm deep crop (230 pixels of 3.87 µm) of a 6 x 6 mm macular scan.
        seed: seed of the whole population (same seed, same bytes).
        pathology_fraction: fraction of eyes (rounded, at least one when above zero) with
            a dome of subretinal fluid (label 13); which eyes is fixed by the seed.
        bm_depth_fraction: depth of the flattened Bruch's membrane as a fraction of ``H``.
        tilt_mm: largest change of the BM depth across the scan before flattening (a
            random tilt per eye in ``[-tilt_mm, tilt_mm]`` along each en-face axis).
        curvature_mm: largest sag of the BM from the scan centre to the edge of either axis
            before flattening (per eye between half and all of it; deeper at the edges).
        dynamic_range_db: dynamic range of the log-compressed OCT display.
        attenuation_per_mm: tissue attenuation coefficient of the OCT light (1/mm).
        rolloff_mm: depth over which the OCT sensitivity falls by 1/e.
        speckle_looks: gamma shape of the multiplicative speckle (1 = fully developed).
        noise_floor: display-scale level of the OCT noise floor (0 = none, 1 = saturating).
        gain_jitter: standard deviation of the log gain of each B-scan.
        vessel_shadow: fraction of the OCT light a large vessel blocks.
        slo_noise: standard deviation of the additive SLO noise (fundus level is about 0.6).
    """

    n_subjects: int = 20
    shape: tuple[int, int, int] = (128, 128, 64)
    extent_mm: tuple[float, float, float] = (0.89, 6.0, 6.0)
    seed: int = 0
    pathology_fraction: float = 0.0
    bm_depth_fraction: float = 0.7
    tilt_mm: float = 0.1
    curvature_mm: float = 0.08
    dynamic_range_db: float = 30.0
    attenuation_per_mm: float = 1.5
    rolloff_mm: float = 2.5
    speckle_looks: int = 4
    noise_floor: float = 0.1
    gain_jitter: float = 0.08
    vessel_shadow: float = 0.9
    slo_noise: float = 0.02

    def __post_init__(self) -> None:
        shape, extent = tuple(self.shape), tuple(float(e) for e in self.extent_mm)  # a YAML list or a tuple
        if len(shape) != 3 or not all(isinstance(n, (int, np.integer)) for n in shape):
            raise ConfigError(f"phantom shape must be three integers (H, W, D), got {shape}")
        self.shape = (int(shape[0]), int(shape[1]), int(shape[2]))
        minimum = (32, 4, 1)
        if any(n < m for n, m in zip(self.shape, minimum)):
            raise ConfigError(f"phantom shape {self.shape}: expected at least {minimum} (H, W, D)")
        needed, available = math.prod(self.shape) * PHANTOM_BYTES_PER_VOXEL, machine_memory_bytes()
        if needed > available:
            raise ConfigError(
                f"phantom shape {self.shape}: about {needed / 2**30:.1f} GiB to build one eye, more than "
                f"the {available / 2**30:.1f} GiB of this machine; expected a smaller shape"
            )
        if len(extent) != 3 or min(extent) <= 0:
            raise ConfigError(f"phantom extent_mm must be three positive sizes in mm, got {extent}")
        self.extent_mm = (extent[0], extent[1], extent[2])
        _check_range("n_subjects", self.n_subjects, 1, None)
        _check_range("seed", self.seed, 0, None)
        _check_range("pathology_fraction", self.pathology_fraction, 0.0, 1.0)
        _check_range("bm_depth_fraction", self.bm_depth_fraction, 0.05, 0.95)
        for name in ("tilt_mm", "curvature_mm", "attenuation_per_mm", "gain_jitter", "slo_noise"):
            _check_range(name, getattr(self, name), 0.0, None)
        _check_range("vessel_shadow", self.vessel_shadow, 0.0, 1.0)
        _check_range("noise_floor", self.noise_floor, 0.0, 1.0)
        _check_range("dynamic_range_db", self.dynamic_range_db, 1.0, None)
        _check_range("rolloff_mm", self.rolloff_mm, 1e-3, None)
        _check_range("speckle_looks", self.speckle_looks, 1, None)
        above = self.extent_mm[0] * self.bm_depth_fraction
        if above < 0.55:
            raise ConfigError(
                f"phantom extent_mm[0] * bm_depth_fraction = {above:.3f} mm leaves too little room above "
                "Bruch's membrane for the retina and a fluid dome; expected at least 0.55 mm"
            )
        if above - self.tilt_mm < 0.5:
            raise ConfigError(
                f"phantom tilt_mm = {self.tilt_mm} raises Bruch's membrane before flattening to "
                f"{above - self.tilt_mm:.3f} mm below the top of the scan; the retina and a fluid dome need "
                "at least 0.5 mm: lower tilt_mm or raise extent_mm[0] * bm_depth_fraction"
            )
        lowest = above + self.tilt_mm + self.curvature_mm
        if lowest > self.extent_mm[0] - self.spacing[0]:
            raise ConfigError(
                f"phantom tilt_mm + curvature_mm = {self.tilt_mm + self.curvature_mm} lowers Bruch's membrane "
                f"before flattening to {lowest:.3f} mm, below the last row of the {self.extent_mm[0]} mm deep "
                "scan; lower them or bm_depth_fraction"
            )

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size ``(dH, dW, dD)`` in mm."""
        (height, width, depth), (n_height, n_width, n_depth) = self.extent_mm, self.shape
        return height / n_height, width / n_width, depth / n_depth


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"phantom {name} = {value!r}: expected a number")
    if not np.isfinite(value):
        raise ConfigError(f"phantom {name} = {value!r}: expected a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        wanted = " and ".join(
            t for t in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if t
        )
        raise ConfigError(f"phantom {name} = {value!r}: expected a value {wanted}")


def paper_shape_config(**overrides: Any) -> PhantomConfig:
    """The paper's volume size ``(230, 496, 512)`` with the default extent; ``overrides`` set other fields."""
    return PhantomConfig(**{"shape": PAPER_SHAPE, **overrides})


def _rng(cfg: PhantomConfig, subject_index: int, eye: int, part: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(subject_index, eye, part)))


def pathology_eyes(cfg: PhantomConfig) -> frozenset[tuple[int, str]]:
    """``(subject_index, laterality)`` of the eyes that get subretinal fluid."""
    if cfg.pathology_fraction <= 0:
        return frozenset()
    eyes = [(s, lat) for s in range(cfg.n_subjects) for lat in LATERALITIES]
    count = max(1, round(cfg.pathology_fraction * len(eyes)))
    order = _rng(cfg, 0, 0, _SELECTION).permutation(len(eyes))
    return frozenset(eyes[i] for i in order[:count])


@dataclass(frozen=True)
class _Subject:
    """What both eyes of a subject share (in anatomical coordinates)."""

    fovea_offset_mm: tuple[float, float]
    fovea: Fovea
    thickness_scale: float
    layer_fields: tuple[SmoothField, ...]
    background: SmoothField
    arcades: ArcadeLayout

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Subject:
        offset = (float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.3, 0.3)))
        fovea = Fovea(
            (0.0, 0.0), float(rng.uniform(0.32, 0.5)), float(rng.uniform(0.85, 1.0)), float(rng.uniform(35.0, 60.0))
        )
        fields = tuple(SmoothField.draw(rng) for _ in range(RETINA_LAYERS))
        return cls(
            offset,
            fovea,
            float(rng.uniform(0.92, 1.08)),
            fields,
            SmoothField.draw(rng, 8, (1.0, 5.0)),
            ArcadeLayout.draw(rng),
        )


def _row_edges(cfg: PhantomConfig) -> np.ndarray:
    """Depths ``[H + 1]`` (mm) of the row edges."""
    return np.arange(cfg.shape[0] + 1) * cfg.spacing[0]


def flattened_bm_row(cfg: PhantomConfig) -> int:
    """The row where every stored eye has Bruch's membrane: the first choroid row."""
    edges = _row_edges(cfg)
    bm_depth = np.asarray(cfg.bm_depth_fraction * cfg.extent_mm[0])
    return int(first_rows_below(bm_depth, 0.5 * (edges[1:] + edges[:-1])))


def _grid(cfg: PhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B-scan positions ``[D]`` (mm) and scan coordinates ``x, y [W, D]`` (mm from the centre)."""
    _, width, depth = cfg.shape
    _, d_w, d_d = cfg.spacing
    positions = np.arange(depth) * d_d
    x = (np.arange(width) - (width - 1) / 2) * d_w
    y = positions - (depth - 1) / 2 * d_d
    gx, gy = np.meshgrid(x, y, indexing="ij")
    return positions, gx, gy


def make_eye(cfg: PhantomConfig, subject_index: int, laterality: str) -> Eye:
    """One phantom eye with dense labels and SLO; subject ``f"sub{subject_index + 1:03d}"``.

    The eye as scanned (:func:`make_scanned_eye`), flattened at Bruch's membrane onto
    :func:`flattened_bm_row` by whole-row shifts of each A-scan (OCT filled with 0, labels
    with the edge labels).
    """
    scanned, bm_rows = make_scanned_eye(cfg, subject_index, laterality)
    return flatten_at_bm(scanned, bm_rows, flattened_bm_row(cfg))


def make_scanned_eye(cfg: PhantomConfig, subject_index: int, laterality: str) -> tuple[Eye, np.ndarray]:
    """One phantom eye before flattening and the row of its Bruch's membrane in each A-scan ``[W, D]``.

    Bruch's membrane lies ``tilt . (x, y) / extent + curvature * ((x / half_x)^2 + (y / half_y)^2) / 2``
    deeper than in the flattened eye (``x, y`` from the scan centre); the layers, choroid,
    vessels, attenuation, roll-off, speckle and noise are rendered at these depths. The BM
    row of an A-scan is its first choroid row.
    """
    if not 0 <= subject_index < cfg.n_subjects:
        raise ConfigError(f"phantom subject_index {subject_index}: expected 0 .. {cfg.n_subjects - 1}")
    if laterality not in LATERALITIES:
        raise ConfigError(f"phantom laterality {laterality!r}: expected one of {LATERALITIES}")
    code = _EYE_CODE[laterality]
    side = 1 if laterality == "OD" else -1
    subject = _Subject.draw(_rng(cfg, subject_index, _SUBJECT, _ANATOMY))
    rng = _rng(cfg, subject_index, code, _ANATOMY)
    d_h, d_w, d_d = cfg.spacing
    positions, x, y = _grid(cfg)

    jitter = rng.normal(0.0, 0.05, 2)
    centre = (side * subject.fovea_offset_mm[0] + float(jitter[0]), subject.fovea_offset_mm[1] + float(jitter[1]))
    fovea = replace(
        subject.fovea,
        centre_mm=centre,
        width_mm=subject.fovea.width_mm * float(rng.uniform(0.95, 1.05)),
        depth=min(1.0, subject.fovea.depth * float(rng.uniform(0.97, 1.03))),
        onl_gain_um=subject.fovea.onl_gain_um * float(rng.uniform(0.95, 1.05)),
    )
    nasal, superior = anatomical_coordinates(x, y, centre, side)
    own_fields = [SmoothField.draw(rng) for _ in range(RETINA_LAYERS)]
    variation = np.stack(
        [
            0.07 * shared(nasal, superior) + 0.02 * own(nasal, superior)
            for shared, own in zip(subject.layer_fields, own_fields)
        ]
    )
    thickness = layer_thicknesses_mm(
        nasal, superior, fovea, variation, subject.thickness_scale * float(rng.uniform(0.98, 1.02))
    )
    tilt = rng.uniform(-1.0, 1.0, 2) * cfg.tilt_mm
    curvature = float(rng.uniform(0.5, 1.0)) * cfg.curvature_mm
    half = np.array(cfg.extent_mm[1:]) / 2
    scan_offset = (
        tilt[0] * x / (2 * half[0])
        + tilt[1] * y / (2 * half[1])
        + curvature * ((x / half[0]) ** 2 + (y / half[1]) ** 2) / 2
    )
    reflectivity = np.clip(REFLECTIVITY * rng.uniform(0.94, 1.06, REFLECTIVITY.size), 0.0, 1.0)
    choroid = ChoroidTexture.draw(rng)

    fluid_rng = _rng(cfg, subject_index, code, _FLUID)
    dome = FluidDome(
        (centre[0] + float(fluid_rng.uniform(-0.4, 0.4)), centre[1] + float(fluid_rng.uniform(-0.4, 0.4))),
        float(fluid_rng.uniform(0.7, 1.4)),
        float(fluid_rng.uniform(0.06, 0.15)),
    )
    sick = (subject_index, laterality) in pathology_eyes(cfg)
    bm_depth = cfg.bm_depth_fraction * cfg.extent_mm[0]
    geometry = layer_geometry(thickness, bm_depth, dome.height(x, y) if sick else None).shifted(scan_offset)
    row_edges = _row_edges(cfg)
    row_centres = 0.5 * (row_edges[1:] + row_edges[:-1])
    labels = label_volume(geometry, row_centres)

    tree = grow_tree(subject.arcades, _rng(cfg, subject_index, code, _VESSELS))
    strength, radius = vessel_maps(tree, nasal, superior, float(np.sqrt(d_w * d_d)))

    noise_rng = _rng(cfg, subject_index, code, _NOISE)
    optics = OctOptics(
        cfg.dynamic_range_db,
        cfg.attenuation_per_mm,
        cfg.rolloff_mm,
        cfg.speckle_looks,
        cfg.noise_floor,
        cfg.vessel_shadow,
    )
    gain = np.exp(noise_rng.normal(0.0, cfg.gain_jitter, cfg.shape[2]))
    oct_volume = render_oct(geometry, reflectivity, row_edges, x, y, choroid, strength, radius, gain, optics, noise_rng)
    slo = render_slo(
        x, y, nasal, superior, fovea, subject.background(nasal, superior), strength, cfg.slo_noise, noise_rng
    )
    meta = {
        "source": "retina_data.phantom",
        "phantom_version": PHANTOM_VERSION,
        "seed": cfg.seed,
        "subject_index": subject_index,
        "fovea_mm": [float(c) for c in centre],
        "fovea_bscan": int(np.argmin(np.abs(y[0] - centre[1]))),
        "pit_width_mm": fovea.width_mm,
        "pit_depth": fovea.depth,
        "bm_depth_mm": bm_depth,
        "tilt_mm": [float(t) for t in tilt],
        "curvature_mm": curvature,
        "pathology": sick,
        "fluid": (
            {"centre_mm": list(dome.centre_mm), "radius_mm": dome.radius_mm, "height_mm": dome.height_mm}
            if sick
            else None
        ),
    }
    eye = Eye(
        oct=oct_volume,
        spacing=(d_h, d_w, d_d),
        subject=f"sub{subject_index + 1:03d}",
        laterality=laterality,
        labels=labels,
        slo=slo,
        bscan_positions=positions,
        meta=meta,
    )
    return eye, first_rows_below(geometry.bm_mm, row_centres)


def iter_population(cfg: PhantomConfig) -> Iterator[Eye]:
    """Both eyes (OD, then OS) of every subject, in subject order, one at a time."""
    for subject_index in range(cfg.n_subjects):
        for laterality in LATERALITIES:
            yield make_eye(cfg, subject_index, laterality)


def make_population(cfg: PhantomConfig) -> list[Eye]:
    """Every eye of the population in memory (see :func:`write_phantom` for large shapes)."""
    return list(iter_population(cfg))


def _earlier_phantom_subjects(data_dir: Path) -> set[str]:
    """Subject folders (``subNNN``) of a phantom written into ``data_dir`` before; empty if none."""
    if not (data_dir / DATASET_FILE).is_file():
        return set()
    try:
        provenance = read_dataset_info(data_dir).get("provenance")
    except DataError:
        return set()
    if not isinstance(provenance, dict) or provenance.get("generator") != "retina_data.phantom":
        return set()
    return {p.name for p in data_dir.iterdir() if p.is_dir() and re.fullmatch(r"sub\d{3,}", p.name)}


def write_phantom(
    data_dir: str | Path, cfg: PhantomConfig, *, overwrite: bool = False, progress: bool = True
) -> list[str]:
    """Generate the population into a NIfTI tree with ``dataset.yaml``; returns the eye ids.

    A ``data_dir`` that exists and is not empty is refused unless ``overwrite``; files of
    the same names are then replaced. When the folder held an earlier phantom (its
    ``dataset.yaml`` says so), that phantom's subject folders beyond the new population are
    removed too, so a smaller phantom does not inherit eyes of a larger one; other files are
    left alone.
    """
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise OutputExistsError(f"{data_dir}: exists and is not a folder")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{data_dir}: already holds files; pass --overwrite to replace them")
    stale = _earlier_phantom_subjects(data_dir)
    eye_ids = []
    total = 2 * cfg.n_subjects
    with staged_folder(data_dir) as staging:  # a failed or interrupted run leaves data_dir as it was
        for eye in tqdm(iter_population(cfg), total=total, desc="phantom eyes", unit="eye", disable=not progress):
            write_eye(staging, eye, overwrite=True)
            eye_ids.append(eye.eye_id)
            stale.discard(eye.subject)
        provenance = {"generator": "retina_data.phantom", "phantom_version": PHANTOM_VERSION, "config": to_dict(cfg)}
        write_dataset_info(
            staging, "retina phantom", with_fluid=cfg.pathology_fraction > 0, provenance=provenance, overwrite=True
        )
    for subject in sorted(stale):
        shutil.rmtree(data_dir / subject)
    return eye_ids
