from __future__ import annotations

from pathlib import Path

import certifi
import pytest

from sync.connectors.http import build_session, trust_store


def test_environment_ca_bundle_cannot_override_pinned_trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    extra = tmp_path / "ca.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\nlocal\n-----END CERTIFICATE-----\n")
    session = build_session(extra)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/evil.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/evil.pem")
    merged = session.merge_environment_settings("https://example.test", {}, False, None, None)
    assert merged["verify"] == session.verify
    bundle = Path(session.verify).read_text()
    assert "local" in bundle
    assert Path(certifi.where()).read_text()[:200] in bundle


def test_without_extra_ca_the_public_roots_are_used() -> None:
    assert build_session().verify == certifi.where() == trust_store(None)
    assert build_session().verify is not False
