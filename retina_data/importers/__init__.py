"""Readers that turn scanner exports and public data sets into :class:`~retina_data.eye.Eye` records.

- :mod:`~retina_data.importers.spectralis`: Heidelberg ``.vol``, ``.e2e`` and XML exports (eyepy).
- :mod:`~retina_data.importers.dicom_oct`: DICOM Ophthalmic Tomography with its SLO (pydicom).
- :mod:`~retina_data.importers.duke`: the Duke AMD and Duke DME ``.mat`` files (eyepy).
- :mod:`~retina_data.importers.retouch`: RETOUCH challenge cases (MetaImage, SimpleITK).
- :mod:`~retina_data.importers.stacks`: folders of PNG/TIFF B-scans and multi-page TIFFs.

Shared parts: :mod:`~retina_data.importers.eyepy_volumes` (an eyepy volume as an eye) and
:mod:`~retina_data.importers.localizer` (B-scan positions from their lines on the localizer,
the SLO sampled at every A-scan). Every reader returns an unflattened eye with
``meta["import_notes"]`` saying what it could not map; ``python -m retina_data import``
flattens it at Bruch's membrane and stores it.

Not read, because no test here could check them on a file the tests write: Topcon ``.fda`` /
``.fds`` (``eyepy.import_topcon_fda`` and OCT-Converter) keep their B-scans, often JPEG-compressed,
in a proprietary chunked container; Bioptigen ``.OCT`` is a tagged binary; Zeiss Cirrus ``.img``
is a headerless byte dump whose shape and spacing are not in the file, so a test could only
restate the reader's own reshape. OCT-Converter (0.7.0, no torch dependency, but opencv-python,
imageio-ffmpeg, h5py and natsort) is therefore not an extra.
"""
