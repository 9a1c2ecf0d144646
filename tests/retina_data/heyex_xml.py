"""A minimal writer of Heidelberg Spectralis XML exports, for the import tests.

A HEYEX XML export is a folder holding one ``.xml`` file and the images it names: the
localizer (SLO/NIR) image and one 8-bit image per B-scan. The XML nests
``HEDX/BODY/Patient/Study/Series``; the series holds ``Laterality`` (``R``/``L``) and one
``Image`` per picture, each with ``ImageType/Type`` (``LOCALIZER`` or ``OCT``), an
``OphthalmicAcquisitionContext`` (``Width``, ``Height``, ``ScaleX``, ``ScaleY`` in mm; for a
B-scan also its ``Start`` and ``End`` point ``Coord/X``, ``Coord/Y`` in mm on the localizer)
and ``ImageData/ExamURL``, the Windows path of the image file, of which readers use the file
name. A B-scan's layer annotations are ``Segmentation/SegLine`` elements: ``Name`` and an
``Array`` of one row per A-scan (``3.0e+38`` where not segmented). The XML gives no B-scan
distance: readers derive it from the start points.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image

NOT_SEGMENTED = 3.0e38


def _element(parent: ElementTree.Element, tag: str, text: object = None) -> ElementTree.Element:
    child = ElementTree.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def _date(parent: ElementTree.Element, tag: str) -> None:
    date = _element(_element(parent, tag), "Date")
    for key, value in (("Year", 2024), ("Month", 3), ("Day", 14)):
        _element(date, key, value)


def _context(image: ElementTree.Element, width: int, height: int, scale: tuple[float, float]) -> ElementTree.Element:
    context = _element(image, "OphthalmicAcquisitionContext")
    for key, value in (("Width", width), ("Height", height), ("ScaleX", scale[0]), ("ScaleY", scale[1])):
        _element(context, key, value)
    return context


def _image(series: ElementTree.Element, kind: str, file_name: str) -> ElementTree.Element:
    image = _element(series, "Image")
    _element(_element(image, "ImageType"), "Type", kind)
    _element(_element(image, "ImageData"), "ExamURL", f"C:\\HEYEX\\export\\{file_name}")
    return image


def write_xml_export(
    folder: Path,
    bscans: np.ndarray,
    localizer: np.ndarray,
    *,
    scale_x: float,
    scale_y: float,
    distance: float,
    slo_scale: tuple[float, float],
    laterality: str = "OD",
    start: tuple[float, float] = (0.0, 0.0),
    layers: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``folder/scan.xml`` with its images; returns the XML path.

    Args:
        bscans: ``[D, H, W]`` uint8 B-scans; B-scan ``d`` runs from ``start + (0, d * distance)``
            to ``start + ((W - 1) * scale_x, d * distance)`` (mm on the localizer).
        localizer: ``[rows, cols]`` uint8 image, ``slo_scale`` = (x, y) mm per pixel.
        laterality: ``"OD"`` or ``"OS"`` (written as ``R``/``L``).
        layers: Heyex layer name -> boundary rows ``[D, W]`` (NaN: not segmented).
    """
    folder.mkdir(parents=True, exist_ok=True)
    depth, height, width = bscans.shape
    root = ElementTree.Element("HEDX")
    body = _element(root, "BODY")
    _element(_element(body, "SWVersion"), "Version", "5.4")
    patient = _element(body, "Patient")
    _element(patient, "ID", 1)
    _element(patient, "PatientID", "p01")
    _date(patient, "Birthdate")
    study = _element(patient, "Study")
    _date(study, "StudyDate")
    series = _element(study, "Series")
    _element(series, "ID", 7)
    _element(series, "Laterality", "R" if laterality == "OD" else "L")

    Image.fromarray(localizer).save(folder / "localizer.png")
    _context(_image(series, "LOCALIZER", "localizer.png"), localizer.shape[1], localizer.shape[0], slo_scale)
    for d in range(depth):
        name = f"bscan_{d:03d}.png"
        Image.fromarray(bscans[d]).save(folder / name)
        image = _image(series, "OCT", name)
        context = _context(image, width, height, (scale_x, scale_y))
        y = start[1] + d * distance
        for tag, x in (("Start", start[0]), ("End", start[0] + (width - 1) * scale_x)):
            coord = _element(_element(context, tag), "Coord")
            _element(coord, "X", x)
            _element(coord, "Y", y)
        if layers:
            segmentation = _element(image, "Segmentation")
            _element(segmentation, "NumSegmentations", len(layers))
            for layer, rows in layers.items():
                line = _element(segmentation, "SegLine")
                _element(line, "Name", layer)
                values = np.where(np.isnan(rows[d]), NOT_SEGMENTED, rows[d])
                _element(line, "Array", " ".join(f"{v:g}" for v in values))
    path = folder / "scan.xml"
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
