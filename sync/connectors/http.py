"""The one way both connectors build their `requests.Session`: TLS always verified, an extra CA trusted explicitly.

`requests` lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE silently replace a session's `verify` on every request; this
session pins its own trust store so an environment variable can neither widen nor narrow it.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import certifi
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


class PinnedTrustSession(requests.Session):
    """A Session whose `verify` (a CA file path) always wins over the environment."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings


@cache
def trust_store(extra_ca: Path | None) -> str:
    """A CA file with the public roots, plus `extra_ca` when given (e.g. the local emulators' CA)."""
    if extra_ca is None:
        return certifi.where()
    fd, path = tempfile.mkstemp(prefix="sync-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as out:
        out.write(Path(certifi.where()).read_bytes())
        out.write(b"\n")
        out.write(Path(extra_ca).read_bytes())
    atexit.register(lambda: Path(path).unlink(missing_ok=True))
    return path


def build_session(
    extra_ca: Path | None = None,
    retry: Retry | None = None,
    pool_maxsize: int = 10,
    user_agent: str = "marketo-dynamics-sync",
) -> requests.Session:
    session = PinnedTrustSession()
    session.verify = trust_store(Path(extra_ca) if extra_ca else None)
    adapter = HTTPAdapter(max_retries=retry or Retry(total=0, raise_on_status=False), pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    return session
