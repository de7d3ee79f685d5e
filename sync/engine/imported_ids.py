"""The Marketo ids of persons a Bulk Import just created or updated: Marketo's import answers with counts, not ids.

They are proven by the link field each row carried (the Dynamics record's id), the cheaper way for the size:
- few rows: a REST lookup by the link field, 300 values a call;
- many rows: one Bulk Extract of id and link field over the persons created since the import began (Marketo's own
  time, from its Date header: create, enqueue, a status poll or two, the file: about 5 calls for any size), then a
  REST lookup for the rows the export did not hold (a repeat of an import updates persons created earlier).
A row found neither way is not linked: its record gets an error and the next sync tries again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from sync.connectors.marketo import MarketoClient

log = logging.getLogger(__name__)
LOOKUP_BATCH = 300
EXPORT_CALLS = 5  # create, enqueue, status polls, the file
SKEW = timedelta(seconds=1)  # HTTP dates and createdAt have whole seconds (both cut down): a second of margin


def export_pays(rows: int) -> bool:
    return math.ceil(rows / LOOKUP_BATCH) > EXPORT_CALLS


def imported_person_ids(
    marketo: MarketoClient, link_field: str, dynamics_ids: Sequence[str], since: datetime | None
) -> dict[str, str]:
    """lower-cased Dynamics id -> Marketo person id, for the imported rows found."""
    wanted = {d.lower() for d in dynamics_ids}
    found: dict[str, str] = {}
    until = marketo.server_time()
    if since is not None and until is not None and export_pays(len(wanted)):
        start, end = since - SKEW, until + SKEW
        export = marketo.queue_lead_export(["id", link_field], start, end, "createdAt")
        # its size (the polls go by it): these rows, and those of the imports that ran beside theirs
        marketo.wait_lead_export(export, rows=max(len(wanted), marketo.imported_rows_between(start, end)))
        for row, _offset in marketo.lead_export_rows(export):
            key = str(row.get(link_field) or "").lower()
            if key in wanted and key not in found:
                found[key] = str(row["id"])
        log.debug("imported ids: %s of %s by one export", len(found), len(wanted))
    rest = sorted(wanted - set(found))
    if rest:
        for person in marketo.get_leads(link_field, rest, ["id", link_field]):
            key = str(person.values.get(link_field) or "").lower()
            found.setdefault(key, str(person.id))
    return found
