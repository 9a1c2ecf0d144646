"""The reference fold containers: ``dataset_flat_subsmpl<k>_<train|test>_fold<f>.npz``.

Keys (read and written exactly): ``oct_vols [N, H, W, D]``, ``seg_vols [N, H, W, D]``,
``enface_imgs``, ``subject_names [N]``, ``spacing_oct [3]`` (mm, in array order
``H, W, D``). Containers for eyes without labels or SLO simply omit ``seg_vols`` or
``enface_imgs``. Reading and writing back a container gives the same keys, dtypes and
array bytes: the dtypes of ``subject_names``, ``spacing_oct`` and ``seg_vols`` and the
en-face layout travel in ``Eye.meta``.

``enface_imgs`` come in two layouts: ``[N, W, D]`` (ours, and the reference README's) and
``[N, D, W]`` (what the reference code writes and indexes: ``[B-scan, A-scan]`` per eye).
``enface_layout="auto"`` tells them apart by which axis has the OCT's ``W`` A-scans; when
both have (``W == D``) the container is ambiguous and the caller must say which
(``SETTINGS.ENFACE_LAYOUT`` in the interpolation configs). ``seg_vols`` stored as floats
holding class indices (as the reference stores them) are accepted when every value is an
integer, and read as uint8.

The en-face images may hold more columns than the OCT has B-scans (a dense SLO beside
sparse B-scans); their columns are then taken to span the same slow-axis extent at
``spacing_oct[2] * D / Ds`` mm.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from retina_data.errors import DataError
from retina_data.eye import LATERALITIES, Eye
from retina_data.files import atomic_save
from retina_data.identifiers import check_id
from retina_data.tree import check_values

REQUIRED_KEYS = ("oct_vols", "subject_names", "spacing_oct")
OPTIONAL_KEYS = ("seg_vols", "enface_imgs")
EnfaceLayout = Literal["auto", "NDW", "NWD"]
ENFACE_LAYOUTS: tuple[str, ...] = ("auto", "NDW", "NWD")


def container_name(subsample: int, split: str, fold: int) -> str:
    """``dataset_flat_subsmpl<k>_<split>_fold<f>.npz``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return f"dataset_flat_subsmpl{subsample}_{split}_fold{fold}.npz"


def _split_name(name: str) -> tuple[str, str]:
    for laterality in LATERALITIES:
        if name.upper().endswith(f"_{laterality}"):
            return name[: -len(laterality) - 1], laterality
    return name, "OD"


def write_container(path: str | Path, eyes: list[Eye], *, overwrite: bool = False) -> Path:
    """Stack eyes of equal shape into one reference container.

    En-face images are written ``[N, W, D]`` unless the eyes were read from an ``[N, D, W]``
    container; labels as uint8 unless read with another dtype.
    """
    if not eyes:
        raise DataError(f"{path}: no eyes to write")
    shapes = {eye.shape for eye in eyes}
    if len(shapes) != 1:
        raise DataError(f"{path}: all eyes in a container need one shape, got {sorted(shapes)}")
    spacings = {eye.spacing for eye in eyes}
    if len(spacings) != 1:
        raise DataError(f"{path}: all eyes in a container need one spacing, got {sorted(spacings)}")
    stored = eyes[0].meta.get("container_dtypes", {})
    arrays: dict[str, np.ndarray] = {
        "oct_vols": np.stack([eye.oct for eye in eyes]),
        "subject_names": np.array([eye.meta.get("container_name", eye.eye_id) for eye in eyes]),
        "spacing_oct": np.asarray(eyes[0].spacing, dtype=stored.get("spacing_oct", np.float64)),
    }
    names_dtype = np.dtype(stored.get("subject_names", arrays["subject_names"].dtype))
    if names_dtype.kind == "U" and names_dtype.itemsize >= arrays["subject_names"].dtype.itemsize:
        arrays["subject_names"] = arrays["subject_names"].astype(names_dtype)
    labels = [eye.labels for eye in eyes if eye.labels is not None]
    if labels:
        if len(labels) != len(eyes):
            raise DataError(f"{path}: some eyes have labels and some do not")
        arrays["seg_vols"] = np.stack(labels).astype(stored.get("seg_vols", np.uint8))
    slos = [eye.slo for eye in eyes if eye.slo is not None]
    if slos:
        if len(slos) != len(eyes) or len({slo.shape for slo in slos}) != 1:
            raise DataError(f"{path}: the eyes' SLO images are missing for some or differ in shape")
        enface = np.stack(slos)  # [N, W, D]
        if eyes[0].meta.get("container_enface_layout") == "NDW":
            enface = np.ascontiguousarray(enface.transpose(0, 2, 1))
        arrays["enface_imgs"] = enface
    return atomic_save(path, lambda tmp: np.savez_compressed(tmp, allow_pickle=False, **arrays), overwrite=overwrite)


READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error)
"""What reading a damaged ``.npz`` raises (``zlib.error``: a compressed member whose bytes are damaged)."""


def read_container_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The container's arrays exactly as stored; corrupt or incomplete files raise DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: fold container not found")
    try:
        loaded = np.load(path, allow_pickle=False)
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read .npz container (truncated or corrupt?): {exc}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(
            f"{path}: holds a single array (a .npy file named .npz?); expected an .npz container "
            f"with the keys {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}"
        )
    try:
        with loaded as data:
            arrays = {key: data[key] for key in data.files}
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read .npz container (truncated or corrupt?): {exc}") from exc
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; expected {REQUIRED_KEYS + OPTIONAL_KEYS}")
    for key in ("oct_vols", "seg_vols", "enface_imgs", "spacing_oct"):
        if key in arrays and not (np.issubdtype(arrays[key].dtype, np.number) and arrays[key].dtype.kind != "c"):
            raise DataError(
                f"{path}: {key} has dtype {arrays[key].dtype}; expected numbers"
                + (" (3 voxel sizes in mm)" if key == "spacing_oct" else "")
            )
    if arrays["subject_names"].dtype.kind not in "US":
        raise DataError(f"{path}: subject_names has dtype {arrays['subject_names'].dtype}; expected text")
    if arrays["subject_names"].dtype.kind == "S":
        arrays["subject_names"] = np.char.decode(arrays["subject_names"], "utf-8", "replace")
    oct_vols = arrays["oct_vols"]
    if oct_vols.ndim != 4:
        raise DataError(f"{path}: oct_vols must be [N, H, W, D], got shape {oct_vols.shape}")
    n = oct_vols.shape[0]
    if arrays["subject_names"].shape != (n,):
        raise DataError(f"{path}: subject_names has shape {arrays['subject_names'].shape}, expected ({n},)")
    if arrays["spacing_oct"].shape != (3,):
        raise DataError(f"{path}: spacing_oct must hold 3 values, got shape {arrays['spacing_oct'].shape}")
    seen: dict[str, str] = {}
    for name in (str(name) for name in arrays["subject_names"]):
        if name.casefold() in seen:
            raise DataError(
                f"{path}: subject_names lists {name!r} twice (as {seen[name.casefold()]!r}, ignoring "
                "letter case); expected each eye once"
            )
        seen[name.casefold()] = name
    if "seg_vols" in arrays and arrays["seg_vols"].shape != oct_vols.shape:
        raise DataError(f"{path}: seg_vols shape {arrays['seg_vols'].shape} != oct_vols shape {oct_vols.shape}")
    if "enface_imgs" in arrays:
        enface = arrays["enface_imgs"]
        if enface.ndim != 3 or enface.shape[0] != n or oct_vols.shape[2] not in enface.shape[1:]:
            raise DataError(
                f"{path}: enface_imgs must be [N={n}, W={oct_vols.shape[2]}, D] or "
                f"[N={n}, D, W={oct_vols.shape[2]}], got {enface.shape}"
            )
    return arrays


def refuse_shared_subjects(train: list[Eye], train_path: str | Path, test: list[Eye], test_path: str | Path) -> None:
    """Refuse a fold whose training and test containers share a subject (an eye trained on and
    then scored, or the other eye of a scored subject: leakage)."""
    shared = sorted({eye.subject for eye in train} & {eye.subject for eye in test})
    if shared:
        shown = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
        raise DataError(
            f"{test_path}: subject(s) {shown} also in the training container {Path(train_path).name}; "
            "expected disjoint subjects in the train and test containers of a fold"
        )


def resolve_enface_layout(
    path: str | Path, oct_shape: tuple[int, ...], enface_shape: tuple[int, ...], layout: EnfaceLayout = "auto"
) -> Literal["NDW", "NWD"]:
    """Which layout ``enface_imgs`` of ``enface_shape`` has beside ``oct_vols`` of ``oct_shape [N, H, W, D]``.

    Raises:
        DataError: the shape does not fit the stated layout, or ``"auto"`` cannot tell
            (the en-face image is ``W x W``).
    """
    width = oct_shape[2]
    fits = {"NWD": enface_shape[1] == width, "NDW": enface_shape[2] == width}
    if layout not in ENFACE_LAYOUTS:
        raise DataError(f"{path}: en-face layout {layout!r}; expected one of {ENFACE_LAYOUTS}")
    if layout != "auto":
        if not fits[layout]:
            raise DataError(f"{path}: enface_imgs {enface_shape} is not {layout} beside oct_vols {oct_shape}")
        return layout
    if all(fits.values()):
        raise DataError(
            f"{path}: enface_imgs {enface_shape} has W = D = {width}, so its layout is ambiguous; "
            "state it: SETTINGS.ENFACE_LAYOUT = 'NDW' (per eye [B-scan, A-scan], as the reference "
            "code writes it) or 'NWD' ([A-scan, B-scan])"
        )
    return "NWD" if fits["NWD"] else "NDW"


def read_container(path: str | Path, enface_layout: EnfaceLayout = "auto") -> list[Eye]:
    """The eyes stored in a reference container.

    OCT and en-face arrays keep their stored dtype; en-face images become ``[W, D]`` per eye
    (``enface_layout``: see :func:`resolve_enface_layout`); labels become uint8.
    """
    arrays = read_container_arrays(path)
    for key in ("oct_vols", "seg_vols", "enface_imgs"):
        if key in arrays:
            check_values(f"{path}: {key}", arrays[key], labels=key == "seg_vols")
    spacing = tuple(float(s) for s in arrays["spacing_oct"])
    depth = arrays["oct_vols"].shape[3]
    positions = np.arange(depth) * spacing[2]
    dtypes = {key: arrays[key].dtype.str for key in ("subject_names", "spacing_oct", "seg_vols") if key in arrays}
    layout = None
    if "enface_imgs" in arrays:
        layout = resolve_enface_layout(path, arrays["oct_vols"].shape, arrays["enface_imgs"].shape, enface_layout)
        if layout == "NDW":
            arrays["enface_imgs"] = arrays["enface_imgs"].transpose(0, 2, 1)
    eyes = []
    for i, name in enumerate(arrays["subject_names"]):
        subject, laterality = _split_name(str(name))
        check_id(subject, f"{path}: subject_names[{i}] subject")
        slo = arrays["enface_imgs"][i] if "enface_imgs" in arrays else None
        slo_positions = None
        if slo is not None and slo.shape[1] != depth:
            slo_positions = np.arange(slo.shape[1]) * spacing[2] * depth / slo.shape[1]
        eyes.append(
            Eye(
                oct=arrays["oct_vols"][i],
                spacing=spacing,
                subject=subject,
                laterality=laterality,
                labels=arrays["seg_vols"][i].astype(np.uint8) if "seg_vols" in arrays else None,
                slo=slo,
                bscan_positions=positions,
                slo_positions=slo_positions,
                meta={
                    "container": str(path),
                    "container_name": str(name),
                    "container_dtypes": dtypes,
                    "container_enface_layout": layout,
                },
            )
        )
    return eyes
