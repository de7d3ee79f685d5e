"""The Marketo access token: fetched from the identity endpoint, renewed ~60 s before it expires, or on demand after
601/602. Identity calls do not count against Marketo's quota; they are counted apart (calls["token"]).

The client credentials go in a form-encoded POST body, never in a URL: a URL ends up in exception texts and logs.
The token itself is a secret too: it only ever leaves this module inside an Authorization header.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import requests
from pydantic import SecretStr

from sync.connectors.marketo.errors import CODE_PROTOCOL, MarketoAuthError, MarketoError, TransientError

TOKEN_PATH = "/identity/oauth/token"  # noqa: S105 (a path, not a password)
RENEW_BEFORE_SECONDS = 60.0


@dataclass(frozen=True)
class AccessToken:
    value: SecretStr
    renew_at: float  # monotonic clock


class TokenProvider:
    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        client_id: str,
        client_secret: SecretStr,
        calls: Counter[str],
        *,
        renew_before: float = RENEW_BEFORE_SECONDS,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + TOKEN_PATH
        self._client_id = client_id
        self._secret = client_secret
        self._calls = calls
        self._renew_before = renew_before
        self._timeout = timeout
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = threading.Lock()
        self.renewals = 0

    def __repr__(self) -> str:
        return f"TokenProvider(client_id={self._client_id!r}, has_token={self._token is not None})"

    def token(self) -> SecretStr:
        """A token good for the next call (renewed once fewer than `renew_before` seconds of it are left)."""
        with self._lock:
            if self._token is None or self._clock() >= self._token.renew_at:
                self._token = self._fetch()
            return self._token.value

    def invalidate(self, failed: SecretStr) -> None:
        """Forget `failed` (Marketo said 601/602 for it) unless another thread already replaced it."""
        with self._lock:
            if self._token is not None and self._token.value.get_secret_value() == failed.get_secret_value():
                self._token = None

    def _fetch(self) -> AccessToken:
        self._calls["token"] += 1
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret.get_secret_value(),
        }
        try:
            response = self._session.post(self._url, data=form, timeout=self._timeout)
        except requests.RequestException as exc:
            raise TransientError("sync.connection", f"identity endpoint unreachable: {type(exc).__name__}") from None
        if response.status_code in (400, 401, 403):
            raise MarketoAuthError(
                str(response.status_code), f"identity endpoint refused the client credentials: {_describe(response)}"
            )
        if response.status_code != 200:
            raise TransientError(str(response.status_code), f"identity endpoint answered HTTP {response.status_code}")
        try:
            body = response.json()
            value, lifetime = str(body["access_token"]), float(body["expires_in"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MarketoError(CODE_PROTOCOL, "identity endpoint returned no access_token/expires_in") from exc
        self.renewals += 1
        now = self._clock()
        # Asked early, Marketo hands back the SAME token with what is left of its life: then use it to the end
        # (a 602 at the very end is renewed and retried) instead of asking again on every call.
        renew_at = now + lifetime - self._renew_before if lifetime > self._renew_before else now + max(lifetime, 0.0)
        return AccessToken(SecretStr(value), renew_at)


def _describe(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict) and "error" in body:
        return f"{body.get('error')}: {body.get('error_description', '')}".strip()
    return f"HTTP {response.status_code}"
