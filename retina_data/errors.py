"""The one error type that users can cause, shared by every entry point.

Anything a user can get wrong (a config key, a data file, an output folder) is raised as
a :class:`RetinaError` subclass with a message that names the file, key or value and what
was expected. Command lines catch it once (see :mod:`retina_data.commandline`) and exit
with code 2. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class RetinaError(Exception):
    """A problem the user can fix: bad input data, config or arguments."""


class DataError(RetinaError):
    """A data file or data set is missing, unreadable or inconsistent."""


class ConfigError(RetinaError):
    """A config file is missing, malformed, or holds an unknown or ill-typed key."""


class OutputExistsError(RetinaError):
    """An output already exists and would be overwritten without permission."""


class TrainingDivergedError(RetinaError):
    """An optimisation produced a non-finite loss or weights (most often too high a learning rate)."""
