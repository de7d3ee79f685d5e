from __future__ import annotations

import datetime
from collections import Counter

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from sync.connectors.dynamics import AuthenticationError, DataverseClient
from sync.connectors.dynamics.auth import TokenProvider, certificate_credential, is_certificate, read_credential

SECRET = "s3cr3t-value-never-printed"


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sync-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem + cert.public_bytes(serialization.Encoding.PEM).decode()


def test_certificate_pem_is_split_for_msal(pem: str) -> None:
    assert is_certificate(pem) and not is_certificate(SECRET)
    credential = certificate_credential(pem)
    assert credential["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert credential["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_a_pem_without_certificate_is_refused_without_echoing_it(pem: str) -> None:
    key_only = pem[: pem.index("-----BEGIN CERTIFICATE-----")]
    with pytest.raises(AuthenticationError) as info:
        certificate_credential(key_only)
    assert "PRIVATE" not in str(info.value) and key_only[40:80] not in str(info.value)


def test_certificate_setting_may_be_a_path(tmp_path, pem: str) -> None:
    path = tmp_path / "cert.pem"
    path.write_text(pem)
    assert read_credential(SecretStr(str(path))).get_secret_value() == pem
    assert read_credential(SecretStr(pem)).get_secret_value() == pem


def test_msal_is_built_with_our_session_and_discovery_only_for_the_public_cloud(monkeypatch) -> None:
    built: list[dict] = []

    class FakeApp:
        def __init__(self, client_id, **kwargs):
            built.append({"client_id": client_id, **kwargs})

        def acquire_token_for_client(self, scopes):
            return {"access_token": "tok", "scopes": scopes}

        def remove_tokens_for_client(self):
            built.append({"removed": True})

    monkeypatch.setattr("msal.ConfidentialClientApplication", FakeApp)
    session = requests.Session()
    for authority, discovery in [
        ("https://login.microsoftonline.com/tenant", True),
        ("https://127.0.0.1:8443/tenant", False),
    ]:
        built.clear()
        provider = TokenProvider(authority, "cid", SecretStr(SECRET), "https://org/.default", session, Counter())
        assert provider.token() == "tok" and provider.token(fresh=True) == "tok"
        app_kwargs = built[0]
        assert app_kwargs["http_client"] is session and app_kwargs["instance_discovery"] is discovery
        assert app_kwargs["client_credential"] == SECRET and app_kwargs["authority"] == authority
        assert {"removed": True} in built


def test_token_errors_are_typed_and_hold_no_secret(monkeypatch) -> None:
    class RefusingApp:
        def __init__(self, client_id, **kwargs):
            pass

        def acquire_token_for_client(self, scopes):
            return {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret.\nTrace: 1"}

    monkeypatch.setattr("msal.ConfidentialClientApplication", RefusingApp)
    provider = TokenProvider("https://x/t", "cid", SecretStr(SECRET), "s", requests.Session(), Counter())
    with pytest.raises(AuthenticationError) as info:
        provider.token()
    assert info.value.code == "invalid_client" and "Trace" not in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in repr(provider)


def test_client_repr_and_vars_hold_no_secret() -> None:
    client = DataverseClient("https://org.example", "https://login.microsoftonline.com/t", "cid", SecretStr(SECRET))
    assert SECRET not in repr(client)
    assert SECRET not in repr(vars(client)) and SECRET not in repr(vars(client._transport))
    assert SECRET not in repr(vars(client._transport.tokens))
