"""Where a full sync to Dynamics finds Marketo's persons: their id range, and whether REST can read all of it.

Marketo's REST API cannot list every person, but person ids are handed out in creation order. The lowest ids give
the oldest person (and the start of the range); the newest person's id is the highest lead id among the New Lead
activities (type 12) from some recent time to now. When the range is narrow, reading it 300 ids per call costs a few
calls and no Bulk Extract jobs, which queue for seconds to minutes each. When the highest id cannot be proved cheaply
(no New Lead activity within a few looks back, a busy log, or a person above the id the activities gave), the
full sync uses Bulk Extract, which needs no proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sync.connectors.marketo import MarketoClient
from sync.connectors.marketo.models import MarketoPerson

NEW_LEAD = 12
IDS_PER_CALL = 300
MARKETO_EPOCH = datetime(2006, 1, 1, tzinfo=UTC)  # Marketo was founded in 2006: no person is older
LOOK_BACK = (timedelta(days=1), timedelta(days=7), timedelta(days=31), timedelta(days=92), timedelta(days=366))
DENSE_IDS = 1500  # read in full when a person answers among them (early ones may have been deleted)
SAMPLE_STEP = 12  # the probe past the first call: every 12th of the next dense ids (100) ...
FAR_PROBES = 200  # ... and 200 ids spaced evenly on a log scale from there to FAR_TOP (7% apart): one call
FAR_TOP = 10**9
SEARCH_CALLS = 12  # at most this many activity calls to prove the highest id; past it, Bulk Extract is cheaper


@dataclass(frozen=True)
class OldestPersons:
    created: datetime  # where a Bulk Extract by createdAt starts
    lowest_id: int | None  # None when the first ids hold no person: the id range is unknown


def probe_ids() -> list[int]:
    """The second call's ids: a sample of the next dense ids, then ids each about 7% above the one before, up to
    FAR_TOP. Any stretch of ids more than 7% wide holds a probe, wherever it lies, and its persons are seen unless
    the ones at every probe in it were deleted too: a Marketo whose persons below id 12,000,000 were purged is seen
    at the probes between 12M and its highest id (a probe at each power of ten, as before, took it for empty)."""
    sample = list(range(1 + IDS_PER_CALL, DENSE_IDS + 1, SAMPLE_STEP))
    ratio = (FAR_TOP / (DENSE_IDS + 1)) ** (1 / (FAR_PROBES - 1))
    far = [round((DENSE_IDS + 1) * ratio**k) for k in range(FAR_PROBES)]
    return sorted(set(sample + far))


def oldest_persons(marketo: MarketoClient, until: datetime) -> OldestPersons:
    """The lowest ids are the oldest persons. If the first ones are empty, one probe further out (`probe_ids`)
    tells an empty Marketo (nothing to read before `until`) from one whose early persons were deleted: then the
    next ids are read in full, or, if only far ids answer, every window since 2006 is read (pass `since` to narrow
    it). Being wrong about empty costs duplicates (the match index is skipped), so the probe spends its one call
    on the widest net: a person alone between two probes is the case it cannot see."""
    fields = ["id", "createdAt"]
    found = marketo.get_leads("id", list(range(1, 1 + IDS_PER_CALL)), fields)
    if found:
        return _oldest(found)
    probed = marketo.get_leads("id", probe_ids(), fields)
    if any(p.id <= DENSE_IDS for p in probed):  # persons among the next ids: the lowest of them is the oldest
        for start in range(1 + IDS_PER_CALL, DENSE_IDS + 1, IDS_PER_CALL):
            found = marketo.get_leads("id", list(range(start, start + IDS_PER_CALL)), fields)
            if found:
                return _oldest(found)
    if probed:
        return OldestPersons(MARKETO_EPOCH, None)
    return OldestPersons(until, None)


def _oldest(found: list[MarketoPerson]) -> OldestPersons:
    dates = [p.values.get("createdAt") for p in found]
    known = [datetime.fromisoformat(str(d).replace("Z", "+00:00")) for d in dates if d]
    if not known:
        return OldestPersons(MARKETO_EPOCH, min(p.id for p in found))
    return OldestPersons(min(known).replace(second=0, microsecond=0), min(p.id for p in found))


def newest_person_id(
    marketo: MarketoClient, now: datetime, oldest: datetime, calls: int = SEARCH_CALLS, enough: int | None = None
) -> int | None:
    """The highest lead id among the New Lead activities of the shortest look back that has any (each look back is
    read to its end, so the newest person is in it). None when none has any, or proving it takes over `calls`.
    With `enough`, the first id at or above it is returned at once: the caller only needs to know it is that high."""
    spent = 0
    for back in LOOK_BACK:
        since = now - back
        token = marketo.get_paging_token(max(since, MARKETO_EPOCH))
        spent += 1
        highest: int | None = None
        for page in marketo.activities(token, [NEW_LEAD]):  # pages until moreResult is false
            spent += 1
            for activity in page.activities:
                highest = max(highest or 0, activity.lead_id)
            if enough is not None and highest is not None and highest >= enough:
                return highest
            if page.more_result and spent >= calls:
                return None
        if highest is not None:
            return highest
        if since <= oldest:  # every person was created inside this look back, and none left an activity
            return None
    return None


def rest_id_range(marketo: MarketoClient, oldest: OldestPersons, now: datetime, max_ids: int) -> range | None:
    """The ids to read by REST, or None for Bulk Extract. A person just above the proved highest id (one made
    without a New Lead activity the search saw) means the proof is wrong: Bulk Extract then."""
    if oldest.lowest_id is None or max_ids <= 0:
        return None
    highest = newest_person_id(marketo, now, oldest.created, enough=oldest.lowest_id + max_ids)
    if highest is None or highest < oldest.lowest_id or highest - oldest.lowest_id + 1 > max_ids:
        return None
    above = list(range(highest + 1, highest + 1 + IDS_PER_CALL))
    if marketo.get_leads("id", above, ["id"]):
        return None
    return range(oldest.lowest_id, highest + 1)
