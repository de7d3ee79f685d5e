"""Entity declarations and their field mapping (model, loader, the packaged default) and the field transforms."""

from sync.mapping.model import (
    DEFAULT_MAPPING_FILE,
    DeletePolicy,
    Direction,
    EntityMapping,
    FieldMapping,
    LinkFields,
    MappingConfig,
    MappingError,
    System,
    load_mapping,
    parse_mapping,
)
from sync.mapping.transforms import Canonical, TransformError

__all__ = [
    "DEFAULT_MAPPING_FILE",
    "Canonical",
    "DeletePolicy",
    "Direction",
    "EntityMapping",
    "FieldMapping",
    "LinkFields",
    "MappingConfig",
    "MappingError",
    "System",
    "TransformError",
    "load_mapping",
    "parse_mapping",
]
