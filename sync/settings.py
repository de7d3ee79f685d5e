"""Every app setting of the sync, validated in one place.

The setting names are a contract shared with infra/ (Bicep app settings), the emulators (which write an env file with
these names) and the tests. Secrets are `SecretStr`: they never appear in a repr, a log line or an error message.

A missing or invalid setting fails at start with one line naming the setting and what is wrong (`SettingsError`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

NCRONTAB_EVERY_MINUTE = "0 */1 * * * *"


class SettingsError(ValueError):
    """A setting is missing or invalid. The message is one line and names the setting; it never holds a secret."""


def _setting(name: str, description: str, **kwargs: Any) -> Any:
    return Field(validation_alias=AliasChoices(name), description=description, **kwargs)


class Settings(BaseSettings):
    """The app settings. Field aliases are the environment variable names (case-sensitive, as Azure sets them)."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", populate_by_name=False, frozen=True)

    # --- Storage: the Functions host's account, and (optionally) a separate one for the sync state.
    azure_webjobs_storage: SecretStr | None = _setting(
        "AzureWebJobsStorage", "Connection string of the host's storage account (local/Azurite).", default=None
    )
    azure_webjobs_storage_account_name: str | None = _setting(
        "AzureWebJobsStorage__accountName",
        "Identity-based storage: the account name; the app's managed identity is used instead of a key.",
        default=None,
    )
    azure_webjobs_storage_client_id: str | None = _setting(
        "AzureWebJobsStorage__clientId",
        "Identity-based storage: client id of a user-assigned managed identity (omit for system-assigned).",
        default=None,
    )
    sync_storage_connection: SecretStr | None = _setting(
        "SYNC_STORAGE_CONNECTION",
        "Connection string for the sync state; defaults to AzureWebJobsStorage.",
        default=None,
    )
    sync_table_prefix: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,30}$")] = _setting(
        "SYNC_TABLE_PREFIX", "Prefix of every state table name (letters and digits).", default="sync"
    )

    # --- Dynamics 365 / Dataverse
    dynamics_url: str = _setting("DYNAMICS_URL", "Organization URL, e.g. https://contoso.crm.dynamics.com")
    dynamics_tenant_id: str = _setting("DYNAMICS_TENANT_ID", "Entra tenant id (GUID or domain).")
    dynamics_client_id: str = _setting("DYNAMICS_CLIENT_ID", "Application (client) id of the Entra app registration.")
    dynamics_client_secret: SecretStr | None = _setting(
        "DYNAMICS_CLIENT_SECRET",
        "Client secret of the app registration (or use DYNAMICS_CLIENT_CERTIFICATE).",
        default=None,
    )
    dynamics_client_certificate: SecretStr | None = _setting(
        "DYNAMICS_CLIENT_CERTIFICATE",
        "PEM holding the app registration's certificate and private key, instead of a client secret.",
        default=None,
    )
    dynamics_authority: str | None = _setting(
        "DYNAMICS_AUTHORITY", "Authority override; default https://login.microsoftonline.com/<tenant>.", default=None
    )

    dynamics_page_size: Annotated[int, Field(ge=1, le=5000)] = _setting(
        "DYNAMICS_PAGE_SIZE",
        "Records per Dataverse page (odata.maxpagesize; 5000 is the most Dataverse serves).",
        default=5000,
    )

    # --- Marketo
    marketo_base_url: str = _setting("MARKETO_BASE_URL", "REST host, e.g. https://123-ABC-456.mktorest.com")
    marketo_client_id: str = _setting("MARKETO_CLIENT_ID", "Client id of the LaunchPoint custom service.")
    marketo_client_secret: SecretStr = _setting("MARKETO_CLIENT_SECRET", "Client secret of the LaunchPoint service.")
    marketo_daily_call_budget: Annotated[int, Field(ge=1, le=1_000_000)] = _setting(
        "MARKETO_DAILY_CALL_BUDGET",
        "Most Marketo API calls the sync makes per day (default 80% of the 50,000 quota, leaving the rest to others).",
        default=40_000,
    )
    marketo_max_concurrency: Annotated[int, Field(ge=1, le=9)] = _setting(
        "MARKETO_MAX_CONCURRENCY",
        "Concurrent Marketo calls from one process (Marketo allows 10 per instance).",
        default=4,
    )

    # --- TLS, mapping
    sync_ca_bundle: Path | None = _setting(
        "SYNC_CA_BUNDLE", "Extra CA certificate file (PEM) to trust, e.g. the local emulators' CA.", default=None
    )
    sync_mapping_file: Path | None = _setting(
        "SYNC_MAPPING_FILE", "Field mapping file (JSON or YAML); the packaged default is used when unset.", default=None
    )

    # --- Timers: one per stream of the mapping, SYNC_SCHEDULE_<STREAM>, read by the Functions host through %NAME%
    # bindings; validated here so a typo fails early. A stream a custom mapping adds needs its own app setting.
    sync_schedule_systemuser: str = _setting(
        "SYNC_SCHEDULE_SYSTEMUSER",
        "NCRONTAB schedule of the users -> sales persons sync.",
        default=NCRONTAB_EVERY_MINUTE,
    )
    sync_schedule_team: str = _setting(
        "SYNC_SCHEDULE_TEAM", "NCRONTAB schedule of the teams -> sales persons sync.", default=NCRONTAB_EVERY_MINUTE
    )
    sync_schedule_account: str = _setting(
        "SYNC_SCHEDULE_ACCOUNT", "NCRONTAB schedule of the accounts -> companies sync.", default=NCRONTAB_EVERY_MINUTE
    )
    sync_schedule_lead: str = _setting(
        "SYNC_SCHEDULE_LEAD", "NCRONTAB schedule of the lead incremental sync.", default=NCRONTAB_EVERY_MINUTE
    )
    sync_schedule_contact: str = _setting(
        "SYNC_SCHEDULE_CONTACT", "NCRONTAB schedule of the contact incremental sync.", default=NCRONTAB_EVERY_MINUTE
    )
    sync_schedule_opportunity: str = _setting(
        "SYNC_SCHEDULE_OPPORTUNITY",
        "NCRONTAB schedule of the opportunities -> Marketo opportunities sync.",
        default=NCRONTAB_EVERY_MINUTE,
    )
    sync_schedule_opportunityrole: str = _setting(
        "SYNC_SCHEDULE_OPPORTUNITYROLE",
        "NCRONTAB schedule of the opportunity contact roles sync.",
        default=NCRONTAB_EVERY_MINUTE,
    )
    sync_schedule_new_product: str = _setting(
        "SYNC_SCHEDULE_NEW_PRODUCT",
        "NCRONTAB schedule of the products (new_product) -> product_c custom objects sync.",
        default=NCRONTAB_EVERY_MINUTE,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # An explicit --env-file wins over the process environment.
        return (init_settings, dotenv_settings, env_settings)

    # --- Engine
    sync_bulk_import_threshold: Annotated[int, Field(ge=1)] = _setting(
        "SYNC_BULK_IMPORT_THRESHOLD",
        "A full-sync page with at least this many new Marketo persons creates them by Bulk Import instead of REST.",
        default=1000,
    )
    sync_bulk_extract_threshold: Annotated[int, Field(ge=0)] = _setting(
        "SYNC_BULK_EXTRACT_THRESHOLD",
        "A full sync to Dynamics reads Marketo persons by REST (300 ids per call) when their ids span at most this "
        "many, and by Bulk Extract otherwise; 0 always uses Bulk Extract.",
        default=25000,
    )
    sync_full_sync_message_seconds: Annotated[int, Field(ge=0, le=540)] = _setting(
        "SYNC_FULL_SYNC_MESSAGE_SECONDS",
        "A full-sync queue message starts pages (several in flight at once) until this many seconds have passed, "
        "then checkpoints and hands over to the next message; 0 does one page per message. Keep it well below the "
        "function timeout (10 minutes in host.json).",
        default=240,
    )
    sync_full_sync_import_unit_pages: Annotated[int, Field(ge=1, le=8)] = _setting(
        "SYNC_FULL_SYNC_IMPORT_UNIT_PAGES",
        "A full sync to Marketo sends this many consecutive pages' new persons as one Bulk Import, and proves their "
        "ids by one export: fewer, larger jobs (each costs Marketo ~5 s of queue and start, and 4-6 calls) for more "
        "memory held. 7 pages of 5,000 persons fill about one 10 MB import file.",
        default=7,
    )
    sync_full_sync_match_index: Literal["auto", "always", "never"] = _setting(
        "SYNC_FULL_SYNC_MATCH_INDEX",
        "A first full sync to Marketo matches records against one Bulk Extract of every person's id, e-mail and "
        "link fields, and a full sync to Dynamics against one paged read of every record's id, e-mail and link "
        "column, instead of per-page lookups: auto (when it costs less), always or never.",
        default="auto",
    )
    sync_cycle_time_budget_seconds: Annotated[int, Field(ge=10, le=3600)] = _setting(
        "SYNC_CYCLE_TIME_BUDGET_SECONDS",
        "Seconds an incremental cycle may run before it stops at a page boundary (keep below the function timeout).",
        default=240,
    )
    sync_full_sync_queue: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")] = _setting(
        "SYNC_FULL_SYNC_QUEUE", "Storage queue that carries the full sync's work messages.", default="sync-full"
    )

    @field_validator("dynamics_url", "marketo_base_url", "dynamics_authority")
    @classmethod
    def _https_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith("https://") or len(value) <= len("https://"):
            raise ValueError("must be an https:// URL")
        return value

    @field_validator("sync_ca_bundle", "sync_mapping_file")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @field_validator(
        "sync_schedule_systemuser",
        "sync_schedule_team",
        "sync_schedule_account",
        "sync_schedule_lead",
        "sync_schedule_contact",
        "sync_schedule_opportunity",
        "sync_schedule_opportunityrole",
        "sync_schedule_new_product",
    )
    @classmethod
    def _ncrontab(cls, value: str) -> str:
        if len(value.split()) != 6:
            raise ValueError("must be an NCRONTAB expression with 6 fields (second minute hour day month weekday)")
        return value

    @model_validator(mode="after")
    def _dynamics_credential(self) -> Settings:
        if self.dynamics_client_secret is None and self.dynamics_client_certificate is None:
            raise ValueError("DYNAMICS_CLIENT_SECRET: is required but not set (or set DYNAMICS_CLIENT_CERTIFICATE)")
        return self

    @model_validator(mode="after")
    def _storage_configured(self) -> Settings:
        if self.azure_webjobs_storage is None and self.azure_webjobs_storage_account_name is None:
            raise ValueError(
                "AzureWebJobsStorage: set a connection string, "
                "or AzureWebJobsStorage__accountName for identity-based access"
            )
        return self

    @property
    def state_connection(self) -> SecretStr | None:
        """The connection string for the sync state, or None when the state uses the managed identity."""
        return self.sync_storage_connection or self.azure_webjobs_storage

    @property
    def authority(self) -> str:
        return self.dynamics_authority or f"https://login.microsoftonline.com/{self.dynamics_tenant_id}"


def setting_names() -> set[str]:
    """Every environment variable name the settings model reads (the contract checked against infra/)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        names.update(str(choice) for choice in alias.choices)
    return names


def secret_setting_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        if field.annotation in (SecretStr, SecretStr | None):
            assert isinstance(field.validation_alias, AliasChoices)
            names.update(str(choice) for choice in field.validation_alias.choices)
    return names


def _describe(error: Mapping[str, Any]) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if loc else ""
    field = Settings.model_fields.get(name)
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        name = str(field.validation_alias.choices[0])
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "missing":
        message = "is required but not set"
    message = message.removeprefix("Value error, ")
    if not name:  # model-level validator: the message already names the setting
        return message
    return f"{name}: {message}"


def load_settings(env_file: str | os.PathLike[str] | None = None) -> Settings:
    """Build the settings from the environment, overlaid by an optional dotenv file (its values win).

    Raises SettingsError with one line per problem, each naming the setting.
    """
    env_path = Path(env_file) if env_file is not None else None
    if env_path is not None and not env_path.is_file():
        raise SettingsError(f"--env-file: file not found: {env_file}")
    try:
        return Settings(_env_file=env_path)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors(include_input=False, include_url=False))
        raise SettingsError(f"invalid settings: {problems}") from None
