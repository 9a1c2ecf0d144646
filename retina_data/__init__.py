"""The dataset layout shared by both script trees: eyes, files, configs and the phantom."""

from retina_data.containers import container_name, read_container, write_container
from retina_data.errors import ConfigError, DataError, OutputExistsError, RetinaError
from retina_data.eye import Eye
from retina_data.labels import FLUID_LABEL, LAYER_LABEL_NAMES, NUM_LAYER_CLASSES
from retina_data.tree import eye_files, list_eyes, read_dataset, read_eye, write_eye

__all__ = [
    "FLUID_LABEL",
    "LAYER_LABEL_NAMES",
    "NUM_LAYER_CLASSES",
    "ConfigError",
    "DataError",
    "Eye",
    "OutputExistsError",
    "RetinaError",
    "container_name",
    "eye_files",
    "list_eyes",
    "read_container",
    "read_dataset",
    "read_eye",
    "write_container",
    "write_eye",
]
