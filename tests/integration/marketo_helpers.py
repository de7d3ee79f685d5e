"""A thin raw-`requests` client for the Marketo emulator tests (no connector code: the emulator is under test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from tests.emulated import RunningEmulators


@dataclass
class Raw:
    emulators: RunningEmulators
    session: requests.Session = field(default_factory=requests.Session)
    token: str | None = None

    @property
    def base(self) -> str:
        return self.emulators.base_url("marketo")

    @property
    def ca(self) -> str:
        return self.emulators.ca_file

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.emulators.control("marketo", method, path, **kwargs).json()

    def get_token(self, client_id: str | None = None, client_secret: str | None = None) -> requests.Response:
        settings = self.emulators.settings
        params = {
            "grant_type": "client_credentials",
            "client_id": client_id or settings["MARKETO_CLIENT_ID"],
            "client_secret": client_secret or settings["MARKETO_CLIENT_SECRET"],
        }
        return self.session.get(f"{self.base}/identity/oauth/token", params=params, verify=self.ca, timeout=30)

    def authenticate(self) -> str:
        response = self.get_token()
        response.raise_for_status()
        self.token = response.json()["access_token"]
        return self.token

    def call(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        if self.token is None and token is None:
            self.authenticate()
        headers = dict(kwargs.pop("headers", {}) or {})
        headers.setdefault("Authorization", f"Bearer {token or self.token}")
        return self.session.request(method, f"{self.base}{path}", headers=headers, verify=self.ca, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.call("GET", path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.call("POST", path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def sync(self, records: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
        return self.post("/rest/v1/leads.json", json={"input": records, **body})

    def requests_log(self) -> dict[str, Any]:
        return self.control("GET", "/requests")


def error_code(payload: dict[str, Any]) -> str | None:
    if payload.get("success"):
        return None
    return payload["errors"][0]["code"]
