from __future__ import annotations

from pathlib import Path

import pytest

from sync.settings import SettingsError, load_settings, secret_setting_names, setting_names

VALID = {
    "AzureWebJobsStorage": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0a2V5;",
    "DYNAMICS_URL": "https://contoso.crm.dynamics.com/",
    "DYNAMICS_TENANT_ID": "tenant-1",
    "DYNAMICS_CLIENT_ID": "client-1",
    "DYNAMICS_CLIENT_SECRET": "dyn-secret-value",
    "MARKETO_BASE_URL": "https://123-ABC-456.mktorest.com",
    "MARKETO_CLIENT_ID": "mkto-client",
    "MARKETO_CLIENT_SECRET": "mkto-secret-value",
}
SECRET_VALUES = ["dyn-secret-value", "mkto-secret-value", "c2VjcmV0a2V5"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in setting_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in VALID.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_valid_settings_load_with_defaults(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.dynamics_url == "https://contoso.crm.dynamics.com"
    assert settings.authority == "https://login.microsoftonline.com/tenant-1"
    assert settings.sync_schedule_lead == "0 */1 * * * *"
    assert settings.sync_table_prefix == "sync"
    assert settings.state_connection is not None
    assert settings.dynamics_client_secret.get_secret_value() == "dyn-secret-value"


def test_secrets_never_appear_in_repr_or_str(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        for secret in SECRET_VALUES:
            assert secret not in text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DYNAMICS_URL", None, "DYNAMICS_URL: is required but not set"),
        ("MARKETO_CLIENT_SECRET", None, "MARKETO_CLIENT_SECRET: is required but not set"),
        ("DYNAMICS_URL", "http://contoso.crm.dynamics.com", "DYNAMICS_URL: must be an https:// URL"),
        ("MARKETO_BASE_URL", "123-ABC-456.mktorest.com", "MARKETO_BASE_URL: must be an https:// URL"),
        ("SYNC_SCHEDULE_LEAD", "*/5 * * * *", "SYNC_SCHEDULE_LEAD: must be an NCRONTAB expression"),
        ("SYNC_CA_BUNDLE", "/no/such/ca.pem", "SYNC_CA_BUNDLE: file not found"),
        ("SYNC_TABLE_PREFIX", "bad-prefix", "SYNC_TABLE_PREFIX"),
        ("AzureWebJobsStorage", None, "AzureWebJobsStorage: set a connection string"),
    ],
)
def test_bad_setting_fails_with_one_line_naming_it(
    env: pytest.MonkeyPatch, name: str, value: str | None, message: str
) -> None:
    if value is None:
        env.delenv(name)
    else:
        env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    text = str(raised.value)
    assert message in text
    assert "\n" not in text
    for secret in SECRET_VALUES:
        assert secret not in text


def test_identity_based_storage_needs_no_connection_string(env: pytest.MonkeyPatch) -> None:
    env.delenv("AzureWebJobsStorage")
    env.setenv("AzureWebJobsStorage__accountName", "syncstate")
    settings = load_settings()
    assert settings.state_connection is None
    assert settings.azure_webjobs_storage_account_name == "syncstate"


def test_env_file_overrides_the_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text("DYNAMICS_URL=https://other.crm4.dynamics.com\nSYNC_TABLE_PREFIX=demo\n")
    settings = load_settings(env_file)
    assert settings.dynamics_url == "https://other.crm4.dynamics.com"
    assert settings.sync_table_prefix == "demo"


def test_missing_env_file_is_named(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="--env-file: file not found"):
        load_settings(tmp_path / "nope.env")


def test_contract_names() -> None:
    assert {
        "AzureWebJobsStorage",
        "SYNC_STORAGE_CONNECTION",
        "DYNAMICS_URL",
        "DYNAMICS_TENANT_ID",
        "DYNAMICS_CLIENT_ID",
        "DYNAMICS_CLIENT_SECRET",
        "DYNAMICS_AUTHORITY",
        "MARKETO_BASE_URL",
        "MARKETO_CLIENT_ID",
        "MARKETO_CLIENT_SECRET",
        "SYNC_CA_BUNDLE",
        "SYNC_MAPPING_FILE",
    } <= setting_names()
    assert {"DYNAMICS_CLIENT_SECRET", "MARKETO_CLIENT_SECRET", "AzureWebJobsStorage"} <= secret_setting_names()
