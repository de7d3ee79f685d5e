"""Which Dataverse rows a stream syncs: its sync filter column (new_synctomkto) and its filter rules. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.mapping.model import EntityMapping, MappingConfig


def filter_columns(stream: EntityMapping, mapping: MappingConfig) -> list[str]:
    columns = [rule.column for rule in stream.filter]
    if stream.sync_filter:
        columns.append(mapping.link_fields.dynamics_sync_filter)
    return columns


def skip_reason(stream: EntityMapping, mapping: MappingConfig, raw: Mapping[str, Any]) -> str | None:
    """Why a row does not sync (None: it does). Only an explicit No in the sync filter column skips a row."""
    if stream.sync_filter:
        column = mapping.link_fields.dynamics_sync_filter
        if raw.get(column) is False:
            return f"{column} is No"
    for rule in stream.filter:
        if rule.rejects(raw.get(rule.column)):
            return rule.describe()
    return None
