"""Import of the public Duke OCT data sets (``.mat`` files) through ``eyepy``.

- **Duke AMD** (Farsiu et al. 2013, "RPEDC" set: AMD and control eyes, Bioptigen,
  100 B-scans x 1000 A-scans, ``images`` + ``layerMaps`` + ``Age``), read by
  ``eyepy.import_duke_mat``. Three boundaries are annotated (:data:`DUKE_AMD_BOUNDARIES`):
  ``ILM`` -> our ILM, ``IBRPE`` (inner edge of the RPE-drusen complex) -> our IZ/RPE,
  ``BM`` -> our BM. Our labels are then background (0), the whole neural retina as one class
  (1, RNFL), the RPE-drusen complex (11, RPE) and the choroid (12); classes 2-10 cannot be
  filled.
- **Duke DME** (Chiu et al. 2014: 10 DME eyes, Spectralis, 61 B-scans x 768 A-scans, eleven
  B-scans annotated by two experts), read by ``eyepy.import_dukechiu2_mat``. Eight boundaries
  (:data:`duke_dme_boundaries`): ILM, NFL/GCL, IPL/INL, INL/OPL, OPL/ONL, ISM/ISE (upper edge
  of the ellipsoid zone), OS/RPE and BM map to our ILM, RNFL/GCL, IPL/INL, INL/OPL, OPL/ONL,
  IS/EZ, IZ/RPE and BM. Our classes GCL+IPL become one (2, GCL), ONL+IS one (6, ONL) and
  EZ+OS+IZ one (8, EZ); classes 3, 7, 9 and 10 cannot be filled. The expert's fluid map
  (intraretinal and subretinal fluid alike; Duke does not tell them apart) becomes our fluid
  label 13 over whatever layer lies there.

The sets store no laterality and no SLO (the scanner's localizer is not part of them), so the
caller gives the laterality and the eyes have no SLO; the spacing and B-scan positions are
eyepy's (the papers' nominal values). Only the annotated B-scans are kept, at their own
positions (the Duke AMD annotations cover a 5 mm circle around the fovea, Duke DME annotates
11 of 61 B-scans): an unannotated B-scan would be taught as background. ``annotated_only=False``
keeps every B-scan without labels. A-scans of kept B-scans without annotation are labelled 0
there (counted in ``meta["import_notes"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.importers.eyepy_volumes import BoundaryTable, eye_from_volume, eyepy_module, read_with_eyepy
from retina_data.labels import BOUNDARY_NAMES, FLUID_LABEL

DUKE_AMD_BOUNDARIES: BoundaryTable = dict.fromkeys(BOUNDARY_NAMES, ()) | {
    "ILM": ("ILM",),
    "IZ/RPE": ("IBRPE",),
    "BM": ("BM",),
}
"""Our boundary -> the Duke AMD ``layerMaps`` names as eyepy gives them."""

DUKE_DME_GRADERS = ("manual1", "manual2", "automatic")
DukeDmeGrader = Literal["manual1", "manual2", "automatic"]
_DME_LAYER_SETS = {"manual1": "manualLayers1", "manual2": "manualLayers2", "automatic": "automaticLayersDME"}
_DME_FLUID_SETS = {"manual1": "manualFluid1", "manual2": "manualFluid2", "automatic": "automaticFluidDME"}
_DME_NAMES = {
    "ILM": "ILM",
    "RNFL/GCL": "NFL/GCL",
    "IPL/INL": "IPL/INL",
    "INL/OPL": "INL/OPL",
    "OPL/ONL": "OPL/ONL",
    "IS/EZ": "ISM/ISE",
    "IZ/RPE": "OS/RPE",
    "BM": "BM",
}


def duke_dme_boundaries(grader: DukeDmeGrader) -> BoundaryTable:
    """Our boundary -> the Duke DME layer name of ``grader`` (expert 1 or 2, or the paper's
    automatic segmentation) as eyepy names it (``manualLayers1_NFL/GCL``)."""
    prefix = _DME_LAYER_SETS[grader]
    return {name: (f"{prefix}_{_DME_NAMES[name]}",) if name in _DME_NAMES else () for name in BOUNDARY_NAMES}


def _read_mat(reader_name: str, path: Path, what: str) -> Any:
    eyepy = eyepy_module(what)
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    return read_with_eyepy(getattr(eyepy, reader_name), path, what)


def _annotated_bscans(eye: Eye, annotated_only: bool) -> Eye:
    """The eye's annotated B-scans (those with a layer annotation at some A-scan), or every
    B-scan without labels; with a note of what was dropped."""
    notes = eye.meta["import_notes"]
    if eye.labels is None:
        return eye
    annotated = np.flatnonzero(eye.labels.max(axis=(0, 1)) > 0)
    if not annotated_only or annotated.size == 0:
        notes.append(f"every B-scan kept without labels: {annotated.size} of {eye.shape[2]} B-scans are annotated")
        eye.labels = None
        return eye
    kept = eye.select_bscans(annotated) if annotated.size < eye.shape[2] else eye
    if annotated.size < eye.shape[2]:
        notes.append(f"kept the {annotated.size} annotated of {eye.shape[2]} B-scans at their positions")
    labels = kept.labels
    assert labels is not None  # select_bscans keeps the labels of the B-scans it keeps
    empty = int(np.count_nonzero(labels.max(axis=0) == 0))
    if empty:
        notes.append(
            f"{empty} of {labels.shape[1] * labels.shape[2]} A-scans of the kept B-scans "
            "have no annotation: labelled 0 there"
        )
    return kept


def import_duke_amd(path: str | Path, subject: str, laterality: str, annotated_only: bool = True) -> Eye:
    """An :class:`Eye` from a Duke AMD ``.mat`` file (see the module doc for the mapping).

    Args:
        path: the ``.mat`` file (``images [H, W, D]``, ``layerMaps [D, W, 3]``, ``Age``).
        subject: subject id.
        laterality: ``"OD"``/``"OS"`` (the set does not store it).
        annotated_only: keep only the annotated B-scans (else every B-scan, without labels).
    """
    path = Path(path)
    volume = _read_mat("import_duke_mat", path, "Duke AMD .mat")
    eye = eye_from_volume(
        volume, path, DUKE_AMD_BOUNDARIES, "duke-amd", subject=subject, laterality=laterality, has_localizer=False
    )
    return _annotated_bscans(eye, annotated_only)


def import_duke_dme(
    path: str | Path, subject: str, laterality: str, grader: DukeDmeGrader = "manual1", annotated_only: bool = True
) -> Eye:
    """An :class:`Eye` from a Duke DME (Chiu 2014) ``.mat`` file (see the module doc for the mapping).

    Args:
        path: the ``.mat`` file (``images [H, W, D]``, ``manualLayers1 [8, W, D]`` ... and the
            fluid maps ``manualFluid1 [H, W, D]`` ...).
        subject: subject id.
        laterality: ``"OD"``/``"OS"`` (the set does not store it).
        grader: whose layers and fluid: ``manual1``, ``manual2`` (the two experts) or
            ``automatic`` (the paper's method).
        annotated_only: keep only the annotated B-scans (else every B-scan, without labels).
    """
    if grader not in DUKE_DME_GRADERS:
        raise DataError(f"grader = {grader!r}: expected one of {', '.join(DUKE_DME_GRADERS)}")
    path = Path(path)
    volume = _read_mat("import_dukechiu2_mat", path, "Duke DME .mat")
    eye = eye_from_volume(
        volume,
        path,
        duke_dme_boundaries(grader),
        "duke-dme",
        subject=subject,
        laterality=laterality,
        has_localizer=False,
    )
    fluid_maps = volume.volume_maps
    fluid_name = _DME_FLUID_SETS[grader]
    if eye.labels is not None and fluid_name in fluid_maps:
        fluid = np.asarray(fluid_maps[fluid_name].data, dtype=bool).transpose(1, 2, 0) & (eye.labels > 0)
        eye.labels[fluid] = FLUID_LABEL
        eye.meta["import_notes"].append(
            f"{int(fluid.sum())} voxels of {fluid_name} (any fluid, below the ILM) labelled {FLUID_LABEL}"
        )
    return _annotated_bscans(eye, annotated_only)
