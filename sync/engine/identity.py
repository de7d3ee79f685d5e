"""Is each system still the one the sync state was built against? A Dynamics sandbox refreshed from production
(new organization id, production's GUIDs and link values, void delta tokens) or a Marketo sandbox reset (persons
under new ids) makes every link and watermark wrong: writing on would pair records that do not belong together.

Detection costs no call on an idle cycle: WhoAmI is asked when a delta token is refused, when a full sync starts,
and at most once per process per CHECK_EVERY; Marketo is asked (one call) at the same times, for a sample of the
persons the links name. On detection every stream's cycle skips with the reason, until
`python -m sync relink --after-refresh` re-baselines (sync/relink.py).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from itertools import islice
from typing import Any

from sync.engine.context import SyncContext

log = logging.getLogger(__name__)

CHECK_EVERY = timedelta(minutes=15)
MARKETO_SAMPLE = 10  # linked persons read to tell a Marketo reset from ordinary deletes
MARKETO_SAMPLE_AT_LEAST = 3  # fewer linked persons than this prove nothing


class SandboxChanged(Exception):
    """A system is not the one the state was built against: writing stopped until a relink."""


def halted_reason(ctx: SyncContext) -> str | None:
    halts = ctx.state.systems.halts()
    if not halts:
        return None
    causes = "; ".join(f"{h.system}: {h.reason} (since {h.detected_at.isoformat(timespec='seconds')})" for h in halts)
    return f"writing stopped: {causes}; run `python -m sync relink --after-refresh`"


def guard(ctx: SyncContext) -> str | None:
    """Before a cycle: why it must not write (a halt recorded, or found now by the periodic check), or None."""
    reason = halted_reason(ctx)
    if reason is not None:
        return reason
    if ctx.clock() - ctx.identity_checked_at < CHECK_EVERY:
        return None
    try:
        check_systems(ctx)
    except SandboxChanged:
        return halted_reason(ctx)
    except Exception as exc:  # a system that does not answer now is the cycle's to meet; ask again next period
        log.warning("identity check failed, the cycle goes on: %s: %s", type(exc).__name__, exc)
    return None


def check_systems(ctx: SyncContext) -> None:
    """Ask both systems now; record a halt and raise SandboxChanged if either changed."""
    ctx.identity_checked_at = ctx.clock()
    check_dynamics(ctx)
    check_marketo(ctx)


def check_dynamics(ctx: SyncContext, why: str = "") -> None:
    organization = ctx.dynamics.who_am_i()["OrganizationId"].lower()
    stored = ctx.state.systems.marker("dynamics")
    if stored is None:
        ctx.state.systems.set_marker("dynamics", organization)
    elif stored != organization:
        reason = f"the Dynamics organization id changed from {stored} to {organization} (a sandbox refresh?)"
        if why:
            reason = f"{why}, and {reason}"
        _halt(ctx, "dynamics", reason)


def on_token_refused(ctx: SyncContext, table: str) -> None:
    """A delta token was refused: an expired token (the read starts over, as before) or a refreshed sandbox."""
    check_dynamics(ctx, why=f"the delta token of {table} was refused")


def check_marketo(ctx: SyncContext) -> None:
    """Every sampled linked person is gone, or is someone else now (its link field does not name the record it is
    linked to): the Marketo instance was reset. Ordinary deletes unlink, and the sync writes the link fields."""
    sample: dict[str, tuple[str, str]] = {}  # person id -> (its Marketo link field, the Dynamics id it names)
    for stream in ctx.mapping.person_streams():
        for link in islice(ctx.state.links.list(stream.name), MARKETO_SAMPLE):
            if link.marketo_id.isdigit():
                sample.setdefault(link.marketo_id, (stream.marketo_id_field, link.dynamics_id.lower()))
    if len(sample) < MARKETO_SAMPLE_AT_LEAST:
        return
    fields = sorted({field for field, _ in sample.values()})
    found = {str(p.id): p for p in ctx.marketo.get_leads("id", [int(i) for i in sample], fields)}
    same = [i for i, (field, dynamics_id) in sample.items() if i in found and _names(found[i], field, dynamics_id)]
    if not same:
        _halt(ctx, "marketo", f"none of the {len(sample)} linked Marketo persons sampled is still there (a reset?)")


def _names(person: Any, field: str, dynamics_id: str) -> bool:
    return str(person.values.get(field) or "").lower() == dynamics_id


def _halt(ctx: SyncContext, system: str, reason: str) -> None:
    if all(h.system != system for h in ctx.state.systems.halts()):  # the first detection's reason and time stay
        log.error("sync halted: %s", reason)
        ctx.state.systems.halt(system, reason, at=ctx.clock())  # type: ignore[arg-type]
    raise SandboxChanged(reason)
