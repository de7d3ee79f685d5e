"""Connector errors in plain words, naming the setting to fix. Pure: an exception in, a Problem out.

The texts come from the services (Entra ID, Dataverse, Marketo, Azure Storage) and name codes, never credentials;
the shell still redacts every secret value from them before printing.
"""

from __future__ import annotations

from sync.check.model import Problem
from sync.connectors.dynamics.errors import AuthenticationError, DataverseError, ServiceProtectionError, TransportError
from sync.connectors.marketo.errors import (
    CallBudgetExhaustedError,
    DailyQuotaExceededError,
    MarketoAuthError,
    MarketoError,
    RateLimitError,
    TransientError,
)

CREDENTIAL = "<credential>"  # stands for DYNAMICS_CLIENT_SECRET or DYNAMICS_CLIENT_CERTIFICATE, whichever is set
APP_USER_HINT = (
    "Power Platform admin center > Environments > your environment > Settings > Application users: add the app "
    "registration as an application user with the sync's security role"
)
SECURITY_ROLE_HINT = (
    "give the application user's security role Read on Entity, Field, Relationship, Option Set and Entity Key "
    "(Customization tab), and Read on each synced table"
)

# Entra ID error codes (AADSTSnnnn) -> the setting to blame, what it means, how to fix it.
_ENTRA_CODES: list[tuple[str, str, str, str]] = [
    (
        "AADSTS7000215",
        CREDENTIAL,
        "the token endpoint refused the client secret",
        "copy the secret's Value (not its ID) from the app registration > Certificates & secrets",
    ),
    (
        "AADSTS7000222",
        CREDENTIAL,
        "the client secret has expired",
        "create a new secret under the app registration > Certificates & secrets",
    ),
    (
        "AADSTS700027",
        CREDENTIAL,
        "the token endpoint refused the certificate",
        "upload the certificate (its public part) to the app registration > Certificates & secrets",
    ),
    (
        "AADSTS700016",
        "DYNAMICS_CLIENT_ID",
        "no app registration with this client id in the tenant",
        "use the app registration's Application (client) ID, and check DYNAMICS_TENANT_ID",
    ),
    (
        "AADSTS90002",
        "DYNAMICS_TENANT_ID",
        "Entra ID knows no such tenant",
        "use the Directory (tenant) ID shown on the app registration's Overview",
    ),
    (
        "AADSTS500011",
        "DYNAMICS_URL",
        "Entra ID knows no Dataverse environment at this URL",
        "use the environment URL from the Power Platform admin center, e.g. https://contoso.crm.dynamics.com",
    ),
    (
        "AADSTS1002012",
        "DYNAMICS_URL",
        "the token scope built from this URL is not valid",
        "use the environment URL alone, without a path, e.g. https://contoso.crm.dynamics.com",
    ),
]
_TOKEN_ENDPOINT_CODES = frozenset({"invalid_client", "unauthorized_client", "invalid_request", "invalid_scope"})


def explain_dataverse(exc: DataverseError, *, credential_setting: str = "DYNAMICS_CLIENT_SECRET") -> Problem:
    said = f"{exc.code}: {exc.message}" if exc.message else exc.code
    if isinstance(exc, AuthenticationError):
        for code, setting, meaning, hint in _ENTRA_CODES:
            if code in exc.message or code == exc.code:
                setting = credential_setting if setting == CREDENTIAL else setting
                return Problem(f"{setting}: {meaning} ({_short(said)})", hint)
        if exc.code == "InvalidCertificate":
            hint = "put the private key and its certificate in one PEM"
            return Problem(f"DYNAMICS_CLIENT_CERTIFICATE: {exc.message}", hint)
        if exc.code in ("AuthorityUnavailable", "TokenRequestFailed"):
            return Problem(
                f"DYNAMICS_TENANT_ID / DYNAMICS_AUTHORITY: the Entra ID token endpoint did not answer ({_short(said)})",
                "check the tenant id, and DYNAMICS_AUTHORITY if set (unset, it is login.microsoftonline.com/<tenant>)",
            )
        if "AADSTS" in exc.message or exc.code in _TOKEN_ENDPOINT_CODES:
            return Problem(
                f"{credential_setting}: the token endpoint refused the credentials ({_short(said)})",
                f"check DYNAMICS_CLIENT_ID, DYNAMICS_TENANT_ID and {credential_setting} against the app registration",
            )
        return Problem(
            f"DYNAMICS_CLIENT_ID: Dataverse refused the app's token; is it an application user here? ({_short(said)})",
            APP_USER_HINT,
        )
    if isinstance(exc, TransportError):
        tls = "SSL" in exc.code or "SSL" in exc.message
        return Problem(
            f"DYNAMICS_URL: no answer from the Web API ({_short(said)})",
            "trust the server's CA (SYNC_CA_BUNDLE)" if tls else "check the environment URL and the network",
        )
    if isinstance(exc, ServiceProtectionError):
        wait = f" in {exc.retry_after:.0f} s" if exc.retry_after else " later"
        return Problem(f"Dataverse is throttling this app ({_short(said)})", f"run the check again{wait}")
    if exc.status == 403:
        return Problem(f"the application user may not read table metadata ({_short(said)})", SECURITY_ROLE_HINT)
    return Problem(f"Dataverse answered {_short(str(exc))}", "see Dataverse's message")


def explain_marketo(exc: MarketoError) -> Problem:
    said = f"{exc.code}: {exc.message}"
    if isinstance(exc, MarketoAuthError):
        if exc.code == "603":
            return Problem(
                f"access denied: the API-only user's role lacks a permission ({_short(said)})",
                "Admin > Users & Roles > Roles: give the API user's role Read-Write Person (Access API)",
            )
        return Problem(
            f"MARKETO_CLIENT_SECRET (or MARKETO_CLIENT_ID): {_short(exc.message)}",
            "copy Client Id and Client Secret from Admin > LaunchPoint > your service > View Details",
        )
    if isinstance(exc, CallBudgetExhaustedError):
        return Problem(f"MARKETO_DAILY_CALL_BUDGET: {exc.message}", "raise the budget, or wait for Marketo's next day")
    if isinstance(exc, DailyQuotaExceededError):
        return Problem(
            f"Marketo's daily API quota is used up ({_short(said)})",
            "it resets at midnight US Central time; see Admin > Integration > Web Services > API Call Information",
        )
    if isinstance(exc, RateLimitError):
        return Problem(f"Marketo is rate limiting ({_short(said)})", "run the check again in a minute")
    if isinstance(exc, TransientError):
        tls = "SSL" in exc.message
        return Problem(
            f"MARKETO_BASE_URL: no usable answer ({_short(said)})",
            "trust the server's CA (SYNC_CA_BUNDLE)"
            if tls
            else "use Admin > Integration > Web Services > REST API > Endpoint, without the trailing /rest",
        )
    return Problem(f"Marketo answered {_short(said)}", "see Marketo's message")


def explain_storage(exc: Exception, *, setting: str) -> Problem:
    """`exc`: an azure-core or azure-identity error, or the ValueError of a malformed connection string."""
    name = type(exc).__name__
    code = str(getattr(exc, "error_code", None) or "")
    text = _short(str(exc)) or name
    if code == "AuthenticationFailed":
        hint = "copy a current key: Storage account > Security + networking > Access keys > Connection string"
    elif code.startswith("Authorization"):  # AuthorizationFailure, AuthorizationPermissionMismatch
        hint = "give the app's identity the Storage Table Data Contributor role on the storage account"
    elif name in ("ClientAuthenticationError", "CredentialUnavailableError"):
        hint = "sign in (az login) or give the app a managed identity; AzureWebJobsStorage__clientId names a user one"
    elif name == "ServiceRequestError":
        hint = "check the account name (or the connection string's TableEndpoint) and the network"
    elif isinstance(exc, ValueError):
        hint = "use the connection string from Storage account > Access keys, or AzureWebJobsStorage__accountName"
    else:
        hint = "see the storage service's message"
    return Problem(f"{setting}: the state tables cannot be created or read ({code or name}: {text})", hint)


def _short(text: str, limit: int = 240) -> str:
    first = (text.strip().splitlines() or [""])[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."
