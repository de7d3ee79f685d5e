"""Entra ID app-only tokens through MSAL (client credentials: a secret or a certificate PEM), with MSAL's cache.

MSAL gets its own pinned-trust `requests.Session` as `http_client`: otherwise REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
would silently replace its TLS trust. The MSAL app is built lazily (its constructor already calls the authority's
discovery endpoint), so building a client never touches the network.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal
import requests
from pydantic import SecretStr

from sync.connectors.dynamics.errors import AuthenticationError

PUBLIC_AUTHORITY_HOST = "login.microsoftonline.com"
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def is_certificate(credential: str) -> bool:
    return "-----BEGIN" in credential and "PRIVATE KEY-----" in credential


def certificate_credential(pem: str) -> dict[str, str]:
    """MSAL's credential dict from one PEM holding the private key and the certificate (thumbprint derived by MSAL)."""
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(pem)]
    keys = [b for b in blocks if "PRIVATE KEY-----" in b.splitlines()[0]]
    certs = [b for b in blocks if b.startswith("-----BEGIN CERTIFICATE-----")]
    if len(keys) != 1 or not certs:
        raise AuthenticationError(
            None,
            "InvalidCertificate",
            "DYNAMICS_CLIENT_CERTIFICATE must be a PEM with one private key and its certificate",
        )
    return {"private_key": keys[0], "public_certificate": "\n".join(certs)}


def read_credential(value: SecretStr) -> SecretStr:
    """A certificate setting may hold the PEM itself or the path of a PEM file."""
    raw = value.get_secret_value()
    if "-----BEGIN" not in raw and len(raw) < 4096 and Path(raw).is_file():
        return SecretStr(Path(raw).read_text())
    return value


class TokenProvider:
    """Bearer tokens for one Dataverse organization. Thread-safe; MSAL caches and renews them."""

    def __init__(
        self,
        authority: str,
        client_id: str,
        credential: SecretStr,
        scope: str,
        http_client: requests.Session,
        calls: Counter[str],
        token_cache: msal.TokenCache | None = None,
    ) -> None:
        self.authority = authority.rstrip("/")
        self.client_id = client_id
        self.scope = scope
        self._credential = credential
        self._http = http_client
        self._cache = token_cache
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        http_client.hooks["response"].append(_counting_hook(calls))

    def __repr__(self) -> str:
        return f"TokenProvider(authority={self.authority!r}, client_id={self.client_id!r}, scope={self.scope!r})"

    def close(self) -> None:
        self._http.close()

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            raw = self._credential.get_secret_value()
            client_credential: Any = certificate_credential(raw) if is_certificate(raw) else raw
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=client_credential,
                    authority=self.authority,
                    http_client=self._http,
                    token_cache=self._cache,
                    instance_discovery=urlsplit(self.authority).hostname == PUBLIC_AUTHORITY_HOST,
                )
            except (ValueError, requests.RequestException) as exc:
                # MSAL's discovery errors name the URL and the HTTP problem, never the credential.
                raise AuthenticationError(None, "AuthorityUnavailable", _first_line(exc)) from None
        return self._app

    def token(self, *, fresh: bool = False) -> str:
        """An access token; `fresh` drops the cached one first (after the Web API answered 401 to it)."""
        with self._lock:
            app = self._application()
            if fresh:
                app.remove_tokens_for_client()
            try:
                result = app.acquire_token_for_client(scopes=[self.scope])
            except (ValueError, requests.RequestException) as exc:
                raise AuthenticationError(None, "TokenRequestFailed", _first_line(exc)) from None
        if "access_token" not in result:
            description = str(result.get("error_description") or "no access token in the reply").splitlines()[0]
            raise AuthenticationError(401, str(result.get("error") or "invalid_client"), description)
        return str(result["access_token"])


def _counting_hook(calls: Counter[str]) -> Any:
    def count(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        path = urlsplit(response.url).path
        calls["token" if path.endswith("/token") else "discovery" if "well-known" in path else "auth"] += 1
        return response

    return count


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
