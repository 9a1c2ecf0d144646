"""Import of B-scan image stacks: a folder of PNG/TIFF B-scans or one multi-page TIFF.

A folder's images are taken in natural filename order (``b2.png`` before ``b10.png``), one
B-scan each, ``[H, W]`` (colour images are averaged over their channels). Labels come as a
second stack of the same shape. The SLO is an en-face picture whose rows are the B-scans
(row 0 = first B-scan) and whose columns run along them: ``[D, W]`` as an image, stored
transposed as ``[W, D]``; another size is resampled (bilinear) to ``W x D``. Spacing and the
eye (subject, laterality) are given by the caller, as the images carry neither.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from retina_data.errors import DataError
from retina_data.eye import Eye
from retina_data.preprocessing import scale_to_unit

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders digit runs by value: ``b2`` < ``b10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_image(path: Path) -> np.ndarray:
    """One image file as a 2-D (or, for multi-page TIFF, 3-D ``[pages, H, W]``) array."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as image:
                array = np.asarray(image)
    except Exception as exc:  # PIL and tifffile raise many types for unreadable files
        raise DataError(f"{path}: cannot read image (corrupt or unsupported?): {type(exc).__name__}: {exc}") from exc
    if array.ndim == 3 and array.shape[-1] in (3, 4) and path.suffix.lower() == ".png":
        array = array[..., :3].mean(axis=-1).astype(array.dtype)
    return array


def read_image_stack(path: str | Path) -> np.ndarray:
    """B-scans of a folder or multi-page TIFF as ``[H, W, D]`` in their stored dtype."""
    path = Path(path)
    if path.is_dir():
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                       key=lambda p: natural_key(p.name))
        if not files:
            raise DataError(f"{path}: no B-scan images found (expected {', '.join(IMAGE_SUFFIXES)} files)")
        images = [_read_image(p) for p in files]
        for file, image in zip(files, images):
            if image.ndim != 2 or image.shape != images[0].shape:
                raise DataError(f"{file}: B-scan of shape {image.shape}; expected a 2-D grey image of shape "
                                f"{images[0].shape} like {files[0].name}")
        return np.stack(images, axis=-1)
    if not path.is_file():
        raise DataError(f"{path}: B-scan stack not found (expected a folder of images or a multi-page TIFF)")
    pages = _read_image(path)
    if pages.ndim == 2:
        pages = pages[None]
    if pages.ndim != 3:
        raise DataError(f"{path}: expected a multi-page TIFF of 2-D grey B-scans, got shape {pages.shape}")
    return np.ascontiguousarray(np.moveaxis(pages, 0, -1))


def read_slo_image(path: str | Path, width: int, depth: int) -> np.ndarray:
    """The SLO picture ``[D', W']`` as ``[W, D]`` float32 in ``[0, 1]``, resampled if needed."""
    image = _read_image(Path(path))
    if image.ndim != 2:
        raise DataError(f"{path}: expected a 2-D grey SLO image, got shape {image.shape}")
    slo = scale_to_unit(image).T
    if slo.shape != (width, depth):
        from skimage.transform import resize

        slo = resize(slo, (width, depth), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    return np.ascontiguousarray(slo, dtype=np.float32)


def import_stack(path: str | Path, spacing: tuple[float, float, float], subject: str, laterality: str,
                 labels: str | Path | None = None, slo: str | Path | None = None) -> Eye:
    """An :class:`Eye` from a B-scan stack, with optional label stack and SLO image.

    ``meta["import_notes"]`` says when the eye has no labels or no SLO.
    """
    if len(spacing) != 3 or any(not s > 0 for s in spacing):
        raise DataError(f"spacing must be three positive values dH dW dD in mm, got {tuple(spacing)}")
    oct_volume = scale_to_unit(read_image_stack(path))
    notes = []
    label_volume = None
    if labels is None:
        notes.append("no label stack given: labels are None")
    else:
        raw = read_image_stack(labels)
        if raw.shape != oct_volume.shape:
            raise DataError(f"{labels}: label stack shape {raw.shape} does not match B-scan stack shape {oct_volume.shape}")
        if not np.issubdtype(raw.dtype, np.integer) or raw.min() < 0 or raw.max() > 255:
            raise DataError(f"{labels}: labels must be integers in 0..255, got dtype {raw.dtype} "
                            f"and range {raw.min()}..{raw.max()}")
        label_volume = raw.astype(np.uint8)
    slo_image = None
    if slo is None:
        notes.append("no SLO image given: SLO is None")
    else:
        slo_image = read_slo_image(slo, oct_volume.shape[1], oct_volume.shape[2])
    return Eye(oct=oct_volume, spacing=spacing, subject=subject, laterality=laterality, labels=label_volume,
               slo=slo_image, meta={"source": str(path), "import": "stack", "import_notes": notes})
