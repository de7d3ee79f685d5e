"""A local Dataverse Web API (v9.2) with its Microsoft Entra ID token endpoint, served over HTTPS on loopback.

Follows /work/shared/specs/dataverse-webapi.md and Microsoft's Web API documentation; where those are silent the
code says "(unverified)". Everything lives in memory and runs on one event loop (writes are atomic by design).

Entra ID (what MSAL with `instance_discovery=False` and `authority=DYNAMICS_AUTHORITY` calls):
  GET  /<tenant>/v2.0/.well-known/openid-configuration
  POST /<tenant>/oauth2/v2.0/token   client credentials: client_secret, or a certificate-signed client_assertion
Web API: /api/data/v9.2/ (Bearer token with aud = DYNAMICS_URL; 401 when missing, foreign, expired or revoked).

Test controls (JSON over HTTPS, no auth, not part of the Dataverse API), all under /_emulator:
  POST   /reset                       {"demo_records": N}? -> empty tables (apps, users kept); faults, log cleared
  POST   /seed                        {"table": "lead", "count": N, "values": {...}?, "as": "salesperson"?,
                                      "fast": bool?, "refs": {"parentcustomerid": "account",
                                      "ownerid": ["systemuser", "team"]}?}
                                      Faker for N <= 1000, a table-driven generator above (1,000,000 rows in seconds);
                                      refs: row i's lookup points at the i-th stored row of the table(s), owners only
                                      at enabled interactive users and non-access teams. Users: 1 in 10 an application
                                      user, 1 in 10 disabled; teams: 3 owner, 1 access, 1 Entra group team in 5
  GET    /apps, /apps/<name>          app registrations: "sync" (the settings' app) and "salesperson" (another user):
                                      client_id, client_secret, systemuserid, certificate_pem (cert and key)
  GET    /requests?client=<app|id>    request log: total, by_operation, by_table_operation, by_client, batch_parts,
                                      entries
  DELETE /requests                    clear the log (also POST /requests/clear)
  POST   /faults                      {"spec": "dataverse:429=0.1,..."} and/or
                                      {"429": 0.1, "503": 0.05, "drop": 0.01,
                                      "latency_ms": 20, "jitter_ms": 5, "retry_after": 2, "seed": 1}
                                      and/or {"queue": [{"status": 429, "retry_after": 3, "code": "0x80072322",
                                      "times": 1, "path": "leads", "method": "GET"}, {"drop": true}, {"delay_ms": 500}]}
  DELETE /faults                      clear faults and latency
  POST   /limits                      {"enabled": true, "requests": 6000, "window_seconds": 300, "concurrent": 52,
                                      "execution_ms": 1200000} (service protection, per calling user)
  POST   /profile                     {"profile": "fast"|"realistic", "latency_ms": 20?}
  POST   /tokens/revoke               {"app": "sync"}? or {"client_id": ...}? (all apps when neither)
  POST   /tokens/lifetime             {"seconds": 5}
  POST   /clock                       {"advance_seconds": 86400} (moves the clock: tokens, delta tokens, dates)
  POST   /change-tracking             {"expiry_seconds": 604800, "expire_all": true?}
  PATCH  /schema/<table>              {"change_tracking": false}
  POST   /schema/<table>/columns      {"name": "new_x", "type": "String", "max_length": 100, "required": "None",
                                      "options": {"1": "A"}, "expire_tokens": false}
  PATCH  /schema/<table>/columns/<c>  {"required": "SystemRequired", "max_length": 50}
  DELETE /schema/<table>/columns/<c>  remove a custom column (and any alternate key on it)
  POST   /schema/<table>/keys         {"name": "x_key", "columns": ["emailaddress1"]}
  POST   /sandbox-refresh             {"shift": 1000000?, "link_values": {"<old>": "<new>"}?}: a copy from
                                      production: new GUIDs (lookups follow), production's new_marketopersonid
                                      values, a new OrganizationId, every delta token refused (0x80044352);
                                      answers {"rows", "organization_id", "ids": {old: new}}
  GET    /records/<table>[/<id>]      count and version, or one raw row (not logged: for asserting final state)

Faults on the command line (`python -m emulators --faults SPEC`): comma-separated `dataverse:<key>=<number>`; keys
429, 500, 502, 503, 504, drop (probabilities per Web API request), latency_ms, jitter_ms, retry_after (seconds),
token_lifetime (seconds), seed. Items for other emulators are ignored.

Profiles: `fast` (no limits, no latency) and `realistic` (service protection on with the documented values:
6,000 requests / 300 s -> 0x80072322, 52 concurrent -> 0x80072326, 1,200,000 ms execution -> 0x80072321, each a 429
with Retry-After; plus 20 ms latency per call unless --faults sets latency_ms).
"""

from __future__ import annotations

from emulators.base import EmulatorOptions
from emulators.dataverse.app import DataverseEmulator


def create_emulator(options: EmulatorOptions) -> DataverseEmulator:
    return DataverseEmulator(options)


__all__ = ["DataverseEmulator", "create_emulator"]
