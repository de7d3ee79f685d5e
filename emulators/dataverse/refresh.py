"""A sandbox refresh (an environment copied over from production), as the sync sees it afterwards:

- every row is still there under a new GUID, and every lookup follows its row (the copy is consistent);
- the link column holds production's values (`new_marketopersonid`: ids of the production Marketo), which mean
  nothing in the Marketo sandbox, or point at an unrelated person there;
- the organization has a new id (WhoAmI's OrganizationId);
- the change log starts over: every delta token issued before answers 0x80044352 (ExpiredVersionStamp), as for a
  token older than the retention period, and the next change-tracking read must start from the beginning.

The users every organization has (the administrator, the app registrations' application users) keep their ids, so
the same app registrations still sign in.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emulators.dataverse.app import DataverseEmulator

LINK_COLUMN = "new_marketopersonid"
DEFAULT_SHIFT = 1_000_000  # production's Marketo ids: numbers this Marketo never handed out
MAX_IDS_RETURNED = 100_000  # the answer maps old ids to new ones up to this many rows


def sandbox_refresh(emulator: DataverseEmulator, payload: dict[str, Any]) -> dict[str, Any]:
    """Re-key every row, copy production's link values in, change the organization id and void every delta token.

    payload: {"link_values": {"<sandbox value>": "<production value>"}?, "shift": N?}: a link value found in
    `link_values` becomes its production value; any other numeric one is shifted by `shift` (default 1,000,000; a
    small shift makes it name another, unrelated person)."""
    link_values = {str(k): v for k, v in (payload.get("link_values") or {}).items()}
    shift = int(payload.get("shift", DEFAULT_SHIFT))
    store = emulator.store
    kept = {emulator.admin_user_id, *(app.systemuser_id for app in emulator.authority.apps.values())}
    new_ids: dict[str, str] = {}
    for data in store.data.values():
        for record_id in data.order:  # ascending, so the new sequential ids keep the rows' order
            if record_id not in kept:
                new_ids[record_id] = store.new_id()
    rows_by_table: dict[str, list[dict[str, Any]]] = {}
    relinked = 0
    for name, data in store.data.items():
        rows = []
        for record_id in data.order:
            row = {k: new_ids.get(v, v) if isinstance(v, str) else v for k, v in data.rows[record_id].items()}
            value = row.get(LINK_COLUMN)
            if value is not None:
                row[LINK_COLUMN] = _production_value(str(value), link_values, shift)
                relinked += 1
            rows.append(row)
        rows_by_table[name] = rows
    for name, rows in rows_by_table.items():
        data = store.data[name]
        data.rows.clear()
        data.order.clear()
        data.log_versions.clear()
        data.log_ids.clear()
        data.tombstones.clear()
        data.key_index = {}
        store.bulk_load(name, rows)
        data.rebuild_key_index()
    store.next_version()  # every token issued before names a version below this one
    for data in store.data.values():
        data.tracking_since = store.version
    old_org = emulator.web_api.organization_id
    emulator.web_api.organization_id = str(uuid.uuid4())
    return {
        "rows": len(new_ids),
        "link_values": relinked,
        "organization_id": emulator.web_api.organization_id,
        "previous_organization_id": old_org,
        "ids": new_ids if len(new_ids) <= MAX_IDS_RETURNED else {},
    }


def _production_value(value: str, link_values: dict[str, Any], shift: int) -> Any:
    if value in link_values:
        return link_values[value]
    return str(int(value) + shift) if value.isdigit() else value
