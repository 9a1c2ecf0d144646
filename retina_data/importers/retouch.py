"""Import of the public RETOUCH challenge volumes (MetaImage ``oct.mhd`` + ``reference.mhd``).

A RETOUCH case is a folder holding ``oct.mhd`` (Cirrus and Topcon as 8-bit, Spectralis as
16-bit samples; array ``[D, H, W]``, spacing in mm in ITK order ``(dW, dH, dD)``) and, for
training cases, ``reference.mhd`` of the same grid with 0 background, 1 intraretinal fluid
(IRF), 2 subretinal fluid (SRF), 3 pigment epithelial detachment (PED).

Read with SimpleITK (already required) rather than ``eyepy.import_retouch``, which needs the
``itk`` package only to read the MetaImage and then rounds 16-bit Spectralis samples to
8 bits. Mapping to an :class:`Eye`:

- OCT ``[H, W, D]`` in ``[0, 1]`` (samples divided by their type's maximum), spacing
  ``(dH, dW, dD)``, B-scans evenly spaced at ``dD`` (the files hold no positions), no SLO.
- labels: none. RETOUCH annotates fluid only, no layers, while our labels give every voxel
  its layer (0 above the ILM ... 12 the choroid), so no label volume of ours can be filled
  from it: SRF would be our fluid label 13, IRF and PED have no class of ours. The voxel
  counts of the three fluids are given in ``meta["import_notes"]`` and ``meta["retouch_fluid_voxels"]``.

The laterality is not stored and comes from the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.preprocessing import scale_to_unit

RETOUCH_FLUIDS = {1: "IRF", 2: "SRF", 3: "PED"}
"""RETOUCH reference values -> fluid names."""


def _read_mhd(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A MetaImage's array ``[D, H, W]`` and spacing in ITK order ``(dW, dH, dD)``."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise DataError(f"{path}: cannot read MetaImage (missing .raw or another format?): {reason}") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            f"{path}: {image.GetDimension()}-D image with {image.GetNumberOfComponentsPerPixel()} "
            "component(s); expected a 3-D grey OCT volume"
        )
    return sitk.GetArrayFromImage(image), tuple(image.GetSpacing())


def import_retouch(folder: str | Path, subject: str, laterality: str) -> Eye:
    """An :class:`Eye` from a RETOUCH case folder (see the module doc for the mapping)."""
    folder = Path(folder)
    oct_path = folder / "oct.mhd"
    if not oct_path.is_file():
        raise DataError(f"{folder}: no oct.mhd; expected a RETOUCH case folder (oct.mhd, oct.raw, reference.mhd)")
    data, (d_w, d_h, d_d) = _read_mhd(oct_path)
    if not np.issubdtype(data.dtype, np.integer):
        raise DataError(f"{oct_path}: {data.dtype} samples; expected the 8- or 16-bit samples RETOUCH stores")
    oct_volume = np.ascontiguousarray(scale_to_unit(data).transpose(1, 2, 0))
    notes = ["no localizer image: SLO is None", "RETOUCH annotates fluid only (no layers): labels are None"]
    fluid_voxels: dict[str, int] = {}
    reference_path = folder / "reference.mhd"
    if reference_path.is_file():
        reference, _ = _read_mhd(reference_path)
        if reference.shape != data.shape:
            raise DataError(
                f"{reference_path}: shape {reference.shape} does not match oct.mhd's {data.shape} ([D, H, W])"
            )
        unknown = sorted(set(np.unique(reference).tolist()) - {0, *RETOUCH_FLUIDS})
        if unknown:
            raise DataError(f"{reference_path}: values {unknown}; expected 0 and the fluids 1 IRF, 2 SRF, 3 PED")
        fluid_voxels = {name: int(np.count_nonzero(reference == value)) for value, name in RETOUCH_FLUIDS.items()}
        notes.append(
            "reference fluid voxels (not stored as labels): "
            + ", ".join(f"{name} {count}" for name, count in fluid_voxels.items())
        )
    else:
        notes.append("no reference.mhd (a test case): no fluid annotation")
    return Eye(
        oct=oct_volume,
        spacing=(d_h, d_w, d_d),
        subject=subject,
        laterality=laterality,
        meta={"source": str(folder), "import": "retouch", "import_notes": notes, "retouch_fluid_voxels": fluid_voxels},
    )
