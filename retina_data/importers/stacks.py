"""Import of B-scan image stacks: a folder of PNG/TIFF B-scans or one multi-page TIFF.

A folder's images are taken in natural filename order (``b2.png`` before ``b10.png``), one
B-scan each, ``[H, W]``. Labels come as a second stack of the same shape. The SLO is an
en-face picture whose rows are the B-scans (row 0 = first B-scan) and whose columns run
along them: ``[D, W]`` as an image, stored transposed as ``[W, D]``; another size is
resampled (bilinear) to ``W x D``. Spacing and the eye (subject, laterality) are given by
the caller, as the images carry neither.

How the image formats users have are read:

- intensities (B-scans, SLO): grey images as stored; palette images through their palette,
  colour images as their luminance (ITU-R 601: 0.299 R + 0.587 G + 0.114 B), an alpha channel
  dropped. Every B-scan of a stack must have the same sample type (a stack mixing 8- and
  16-bit images would be scaled inconsistently); integers are divided by their type's
  maximum, floats must be finite (NaN or Inf is refused, not silently zeroed).
- labels: grey or palette images hold the class indices (a palette image's indices are its
  labels, as label editors write them). A colour label map needs a colour table
  (``{label: [R, G, B]}``, YAML or JSON); a colour not in the table is refused. A binary mask
  stored as 0/255 becomes 0/1 with a note. Labels must be integers 0..255.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np

from retina_data.errors import ConfigError, DataError
from retina_data.eye import Eye
from retina_data.preprocessing import scale_to_unit

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
LUMA = np.array([0.299, 0.587, 0.114])
Role = Literal["intensity", "labels"]


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders digit runs by value: ``b2`` < ``b10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def luminance(colour: np.ndarray) -> np.ndarray:
    """``[..., 3]`` colour samples as grey in the samples' own type."""
    grey = colour[..., :3].astype(np.float64) @ LUMA
    if np.issubdtype(colour.dtype, np.integer):
        return np.rint(grey).astype(colour.dtype)
    return grey.astype(colour.dtype)


def _read_png(path: Path, role: Role) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        mode = opened.mode
        if mode == "P" and role == "labels":
            return np.asarray(opened)  # the palette indices are the labels
        image: Image.Image = opened
        if mode in ("P", "PA"):
            image = opened.convert("RGBA" if "transparency" in opened.info or mode == "PA" else "RGB")
        array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 2:  # grey + alpha
        return array[..., 0]
    if mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.uint16)  # PIL opens some 16-bit grey PNGs as 32-bit integers
    return array


def _read_tiff(path: Path) -> tuple[np.ndarray, bool]:
    """A TIFF's first series, colour samples (if any) on the last axis, and whether it has them."""
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        series = tiff.series[0]
        array = series.asarray()
        axes = series.axes
    if "S" in axes:
        return np.moveaxis(array, axes.index("S"), -1), True
    return array, False


def _read_pages(path: Path, role: Role) -> np.ndarray:
    """One image file as pages ``[P, H, W]`` (``[P, H, W, C]`` for colour labels); intensities
    in colour become their luminance, colour labels whose channels agree become grey."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            array, colour = _read_tiff(path)
        else:
            array = _read_png(path, role)
            colour = array.ndim == 3
    except Exception as exc:  # PIL and tifffile raise many types for unreadable files
        raise DataError(f"{path}: cannot read image (corrupt or unsupported?): {type(exc).__name__}: {exc}") from exc
    if colour:
        if array.shape[-1] not in (3, 4):
            raise DataError(f"{path}: {array.shape[-1]} colour channels; expected grey, RGB or RGBA images")
        if role == "intensity":
            array, colour = luminance(array), False
        elif _is_grey(array):
            array, colour = array[..., 0], False
    image_dims = array.ndim - (1 if colour else 0)
    if image_dims == 2:
        array = array[None]
    elif image_dims != 3:
        raise DataError(f"{path}: image of shape {array.shape}; expected 2-D B-scans")
    return array


def _is_grey(colour: np.ndarray) -> bool:
    return bool(np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2]))


def read_image_stack(path: str | Path, role: Role = "intensity") -> np.ndarray:
    """B-scans of a folder or multi-page TIFF as ``[H, W, D]`` (``[H, W, D, C]`` for colour labels)
    in their stored sample type; every image must have the shape and type of the first."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
            key=lambda p: natural_key(p.name),
        )
        if not files:
            raise DataError(f"{path}: no B-scan images found (expected {', '.join(IMAGE_SUFFIXES)} files)")
        images = [_read_pages(p, role) for p in files]
        for file, image in zip(files, images):
            if image.shape[0] != 1 or image.shape != images[0].shape:
                raise DataError(
                    f"{file}: B-scan of shape {image.shape[1:]} ({image.shape[0]} page(s)); expected one "
                    f"image of shape {images[0].shape[1:]} like {files[0].name}"
                )
            if image.dtype != images[0].dtype:
                raise DataError(
                    f"{file}: {image.dtype} samples, but {files[0].name} has {images[0].dtype}; "
                    "expected one bit depth for the whole stack (convert the images alike)"
                )
        pages = np.concatenate(images, axis=0)
    elif path.is_file():
        pages = _read_pages(path, role)
    else:
        raise DataError(f"{path}: B-scan stack not found (expected a folder of images or a multi-page TIFF)")
    return np.ascontiguousarray(np.moveaxis(pages, 0, 2))


def _read_image(path: Path, role: Role) -> np.ndarray:
    """A single image ``[H, W]`` (the SLO)."""
    pages = _read_pages(path, role)
    if pages.shape[0] != 1 or pages.ndim != 3:
        raise DataError(f"{path}: expected a 2-D grey image, got {pages.shape[0]} page(s) of shape {pages.shape[1:]}")
    return pages[0]


def _finite_intensities(array: np.ndarray, where: Path | str) -> np.ndarray:
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise DataError(
                f"{where}: {bad} NaN or Inf intensities; expected finite values (fill or crop them before importing)"
            )
    elif not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_)):
        raise DataError(f"{where}: {array.dtype} samples; expected grey integer or float images")
    return scale_to_unit(array)


def read_slo_image(path: str | Path, width: int, depth: int) -> np.ndarray:
    """The SLO picture ``[D', W']`` as ``[W, D]`` float32 in ``[0, 1]``, resampled if needed."""
    image = _read_image(Path(path), "intensity")
    if image.ndim != 2:
        raise DataError(f"{path}: expected a 2-D grey SLO image, got shape {image.shape}")
    slo = _finite_intensities(image, path).T
    if slo.shape != (width, depth):
        from skimage.transform import resize

        slo = resize(slo, (width, depth), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    return np.ascontiguousarray(slo, dtype=np.float32)


def read_colour_table(path: str | Path) -> dict[tuple[int, ...], int]:
    """A label colour table ``{label: [R, G, B]}`` (YAML or JSON) as ``{(R, G, B): label}``."""
    from retina_data.config import read_yaml

    try:
        table = read_yaml(Path(path))
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    if not isinstance(table, dict) or not table:
        raise DataError(f"{path}: expected a colour table {{label: [R, G, B], ...}}")
    colours: dict[tuple[int, ...], int] = {}
    for label, colour in table.items():
        if (
            not isinstance(label, int)
            or isinstance(label, bool)
            or not 0 <= label <= 255
            or not isinstance(colour, list)
            or len(colour) != 3
            or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
        ):
            raise DataError(f"{path}: entry {label!r}: {colour!r}; expected a label 0..255 and [R, G, B] in 0..255")
        if tuple(colour) in colours:
            raise DataError(f"{path}: colour {colour} is given to labels {colours[tuple(colour)]} and {label}")
        colours[tuple(colour)] = label
    return colours


def labels_from_colours(colour: np.ndarray, table: dict[tuple[int, ...], int], where: Path | str) -> np.ndarray:
    """``[..., 3|4]`` colour label map to uint8 labels through ``table``; unknown colours refused."""
    rgb = colour[..., :3].astype(np.int64)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    found, inverse = np.unique(keys, return_inverse=True)
    lookup = {(r << 16) | (g << 8) | b: label for (r, g, b), label in table.items()}
    unknown = [int(k) for k in found if int(k) not in lookup]
    if unknown:
        shown = ", ".join(str([k >> 16, (k >> 8) & 255, k & 255]) for k in unknown[:5])
        raise DataError(f"{where}: {len(unknown)} colour(s) not in the colour table, e.g. {shown}")
    return np.array([lookup[int(k)] for k in found], dtype=np.uint8)[inverse].reshape(keys.shape)


def label_volume(
    raw: np.ndarray, where: Path | str, colours: dict[tuple[int, ...], int] | None, notes: list[str]
) -> np.ndarray:
    """Labels ``[H, W, D]`` uint8 from a label stack as read (grey indices or colour)."""
    if raw.ndim == 4:
        if colours is None:
            raise DataError(
                f"{where}: colour label images; expected grey or palette images holding the class "
                "indices, or give a colour table {label: [R, G, B]} (--label-colours)"
            )
        return labels_from_colours(raw, colours, where)
    if np.issubdtype(raw.dtype, np.floating):
        if not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.round(raw)):
            raise DataError(f"{where}: float labels that are not all whole numbers; expected class indices 0..255")
    elif not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.bool_)):
        raise DataError(f"{where}: {raw.dtype} labels; expected integer class indices 0..255")
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        raise DataError(
            f"{where}: labels must be integers in 0..255, got dtype {raw.dtype} and range {raw.min()}..{raw.max()}"
        )
    values = np.unique(raw)
    if values.size == 2 and values[0] == 0 and values[1] == 255:
        notes.append(f"{where}: a 0/255 mask; stored as labels 0/1")
        return (raw == 255).astype(np.uint8)
    return raw.astype(np.uint8)


def import_stack(
    path: str | Path,
    spacing: tuple[float, float, float],
    subject: str,
    laterality: str,
    labels: str | Path | None = None,
    slo: str | Path | None = None,
    label_colours: str | Path | None = None,
) -> Eye:
    """An :class:`Eye` from a B-scan stack, with optional label stack, SLO image and label colour table.

    ``meta["import_notes"]`` says when the eye has no labels or no SLO, and which conversions
    were made.
    """
    if len(spacing) != 3 or any(not s > 0 for s in spacing):
        raise DataError(f"spacing must be three positive values dH dW dD in mm, got {tuple(spacing)}")
    oct_volume = _finite_intensities(read_image_stack(path), path)
    notes: list[str] = []
    labelled = None
    if labels is None:
        notes.append("no label stack given: labels are None")
    else:
        raw = read_image_stack(labels, "labels")
        if raw.shape[:3] != oct_volume.shape:
            raise DataError(
                f"{labels}: label stack shape {raw.shape[:3]} does not match B-scan stack shape {oct_volume.shape}"
            )
        colours = read_colour_table(label_colours) if label_colours is not None else None
        labelled = label_volume(raw, labels, colours, notes)
    slo_image = None
    if slo is None:
        notes.append("no SLO image given: SLO is None")
    else:
        slo_image = read_slo_image(slo, oct_volume.shape[1], oct_volume.shape[2])
    return Eye(
        oct=oct_volume,
        spacing=spacing,
        subject=subject,
        laterality=laterality,
        labels=labelled,
        slo=slo_image,
        meta={"source": str(path), "import": "stack", "import_notes": notes},
    )
