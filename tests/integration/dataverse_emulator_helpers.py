"""Raw-HTTP helpers for the Dataverse emulator tests: a pinned-trust session, tokens, and Web API calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from sync.connectors.http import build_session
from tests.emulated import RunningEmulators


@dataclass
class Dataverse:
    running: RunningEmulators
    session: requests.Session = field(init=False)
    _tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.session = build_session(Path(self.running.ca_file))

    @property
    def settings(self) -> dict[str, str]:
        return self.running.settings

    @property
    def url(self) -> str:
        return self.settings["DYNAMICS_URL"]

    @property
    def api(self) -> str:
        return f"{self.url}/api/data/v9.2/"

    @property
    def token_url(self) -> str:
        return f"{self.settings['DYNAMICS_AUTHORITY']}/oauth2/v2.0/token"

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.running.control("dataverse", method, path, **kwargs).json()

    def app(self, name: str) -> dict[str, Any]:
        return self.control("GET", f"/apps/{name}")

    def request_token(self, client_id: str, secret: str, scope: str | None = None) -> requests.Response:
        form = {
            "client_id": client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": scope or f"{self.url}/.default",
        }
        return self.session.post(self.token_url, data=form, timeout=30)

    def token(self, app: str = "sync", fresh: bool = False) -> str:
        if fresh or app not in self._tokens:
            creds = self.app(app)
            response = self.request_token(creds["client_id"], creds["client_secret"])
            response.raise_for_status()
            self._tokens[app] = response.json()["access_token"]
        return self._tokens[app]

    def headers(self, app: str = "sync", prefer: str | None = None, **extra: str) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token(app)}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
        }
        if prefer:
            headers["Prefer"] = prefer
        headers.update({k.replace("_", "-"): v for k, v in extra.items()})
        return headers

    def call(
        self,
        method: str,
        path: str,
        *,
        app: str = "sync",
        prefer: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        url = path if path.startswith("https://") else self.api + path
        merged = self.headers(app, prefer)
        merged.update(headers or {})
        return self.session.request(method, url, headers=merged, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.call("PATCH", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def create(self, entity_set: str, body: dict[str, Any], app: str = "sync") -> str:
        response = self.post(entity_set, body, app=app)
        assert response.status_code == 204, response.text
        return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")

    def record(self, table: str, record_id: str) -> dict[str, Any]:
        """The stored row, read through the control API (not counted as a Web API call)."""
        return self.control("GET", f"/records/{table}/{record_id}")

    def seed(self, table: str, count: int, **kwargs: Any) -> list[str]:
        return self.control("POST", "/seed", json={"table": table, "count": count, **kwargs})["ids"]

    def read_all(self, url: str, prefer: str) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
        """Follow nextLinks unmodified; returns (rows, last page, number of calls)."""
        rows: list[dict[str, Any]] = []
        calls = 0
        while True:
            response = self.get(url, prefer=prefer)
            calls += 1
            assert response.status_code == 200, response.text
            page = response.json()
            rows.extend(page["value"])
            if "@odata.nextLink" not in page:
                return rows, page, calls
            url = page["@odata.nextLink"]


def error_of(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["code"], body["error"]["message"]


@pytest.fixture(name="dv")
def dataverse_client(dataverse_emulator: RunningEmulators) -> Dataverse:
    """The session's Dataverse emulator, reset for this test; tokens are cached across tests (they survive resets)."""
    client = _CLIENTS.get(id(dataverse_emulator))
    if client is None:
        client = _CLIENTS[id(dataverse_emulator)] = Dataverse(dataverse_emulator)
    client.control("POST", "/reset")
    client._tokens.clear()  # a test may have moved the clock or revoked tokens
    return client


_CLIENTS: dict[int, Dataverse] = {}
