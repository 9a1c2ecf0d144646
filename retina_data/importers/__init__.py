"""Readers that turn scanner exports and public data sets into :class:`~retina_data.eye.Eye` records.

- :mod:`~retina_data.importers.spectralis`: Heidelberg ``.vol``, ``.e2e`` and XML exports (eyepy).
- :mod:`~retina_data.importers.stacks`: folders of PNG/TIFF B-scans and multi-page TIFFs.

Every reader returns an unflattened eye with ``meta["import_notes"]`` saying what it could not
map; ``python -m retina_data import`` flattens it at Bruch's membrane and stores it.
"""
