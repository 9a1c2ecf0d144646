"""Label descriptions that viewers read: an ITK-SNAP label description and a 3D Slicer colour table.

Every folder we write a label volume into also gets ``label_names.itksnap.txt`` (ITK-SNAP:
*Segmentation > Import Label Descriptions*) and ``label_names.ctbl`` (3D Slicer: load it as
a colour table and pick it in the volume's display settings), so the layers open with their
names and distinct colours instead of being recoloured by hand. Both are written from the
class names (``dataset.yaml``'s ``label_names``, or a tree's own names such as the atlas's
10 classes) and can be read back with :func:`read_itksnap_labels` / :func:`read_slicer_colours`.
"""

from __future__ import annotations

import re
from pathlib import Path

from retina_data.errors import DataError
from retina_data.files import atomic_write_text

ITKSNAP_FILE = "label_names.itksnap.txt"
SLICER_FILE = "label_names.ctbl"
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
)
"""Distinct colours by label value (0, background, black)."""
_ITKSNAP_ROW = re.compile(r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d)\s+(\d)\s+"(.*)"\s*$')


def _colour(label: int) -> tuple[int, int, int]:
    """The palette's colour of ``label``; labels past its end reuse its colours (never black)."""
    return PALETTE[label] if label < len(PALETTE) else PALETTE[1 + (label - 1) % (len(PALETTE) - 1)]


def write_label_tables(folder: str | Path, names: list[str]) -> list[Path]:
    """Write both tables for labels ``0 .. len(names) - 1`` into ``folder``; returns their paths."""
    folder = Path(folder)
    itksnap = [
        "# ITK-SNAP Label Description File",
        "# written by retina_data from the data set's label names",
        "# IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL",
    ]
    slicer = [
        "# 3D Slicer colour table, written by retina_data from the data set's label names",
        "# index name R G B A",
    ]
    for label, name in enumerate(names):
        red, green, blue = _colour(label)
        alpha, visible = (0, 0) if label == 0 else (1, 1)
        quoted = name.replace('"', "'")
        itksnap.append(f'{label:5d} {red:5d} {green:4d} {blue:4d} {alpha:8d} {visible:2d} {visible:2d}    "{quoted}"')
        token = re.sub(r"\s+", "_", name) or f"label_{label}"
        slicer.append(f"{label} {token} {red} {green} {blue} {0 if label == 0 else 255}")
    return [
        atomic_write_text(folder / ITKSNAP_FILE, "\n".join(itksnap) + "\n"),
        atomic_write_text(folder / SLICER_FILE, "\n".join(slicer) + "\n"),
    ]


def read_itksnap_labels(path: str | Path) -> dict[int, tuple[str, tuple[int, int, int]]]:
    """``{label: (name, (R, G, B))}`` of an ITK-SNAP label description file."""
    table = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ITKSNAP_ROW.match(line)
        if match is None:
            raise DataError(f"{path}: line {number} is not 'IDX R G B A VIS MSH \"LABEL\"'")
        label, red, green, blue = (int(match.group(i)) for i in range(1, 5))
        table[label] = (match.group(8), (red, green, blue))
    return table


def read_slicer_colours(path: str | Path) -> dict[int, tuple[str, tuple[int, int, int]]]:
    """``{label: (name, (R, G, B))}`` of a 3D Slicer colour table."""
    table = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 6 or not all(f.isdigit() for f in fields[:1] + fields[2:]):
            raise DataError(f"{path}: line {number} is not 'index name R G B A'")
        table[int(fields[0])] = (fields[1], (int(fields[2]), int(fields[3]), int(fields[4])))
    return table
