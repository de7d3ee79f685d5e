"""Offline checks of infra/: the Bicep parses, and what it deploys matches the app.

The Azure and Bicep CLIs are not available in CI and Azure is never called: the template is read as data with
pycep-parser. The checks:
- the app settings the template sets are exactly the settings model's (sync/settings.py), minus the settings the
  template deliberately leaves out, plus the Functions host's own settings; SETTING_DECISIONS below is the one place
  that says how each setting is handled;
- no secret is set in plain text: every secret setting is a Key Vault reference, and a secure parameter flows only
  into a Key Vault secret;
- storage, telemetry and Key Vault are reached through role assignments of the app's own identity, exactly the roles
  it needs; shared keys, Application Insights local auth and Key Vault access policies are off;
- the plan is Flex Consumption (FC1, Linux) and the runtime Python 3.11.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser
from pydantic_core import PydanticUndefined

import sync.settings as settings_model

INFRA = Path(__file__).resolve().parents[2] / "infra"
TEMPLATE = INFRA / "main.bicep"
PARAMETERS_FILE = INFRA / "main.parameters.json"


class How(Enum):
    PARAMETER = "always set from a parameter: required exactly when the model requires it, with the model's default"
    PARAMETER_COMPUTED_DEFAULT = "always set from a parameter whose default the template computes"
    RESOURCE = "always set from a resource the template deploys"
    KEY_VAULT = "always set, as a Key Vault reference to a secret the template stores"
    KEY_VAULT_ONE_OF = "exactly one of its group is set (chosen by a parameter), as a Key Vault reference"
    WHEN_GIVEN = "set only when its parameter is not empty"
    NOT_SET = "never set in Azure"


# The decision for every setting of the settings model that is not plainly How.PARAMETER. A setting added to the model
# without a decision here must be set by the template from a parameter; a decision for a setting the model no longer
# has is reported as stale.
SETTING_DECISIONS: dict[str, tuple[How, str]] = {
    "AzureWebJobsStorage": (
        How.NOT_SET,
        "a connection string carries an account key; shared keys are disabled and the host and the sync state use "
        "the identity-based AzureWebJobsStorage__* settings instead",
    ),
    "SYNC_STORAGE_CONNECTION": (
        How.NOT_SET,
        "a connection string carries an account key; the sync state shares the host's identity-based account",
    ),
    "SYNC_CA_BUNDLE": (How.NOT_SET, "only the local emulators need an extra CA; Dataverse and Marketo use public CAs"),
    "AzureWebJobsStorage__accountName": (How.RESOURCE, "the storage account the template deploys"),
    "AzureWebJobsStorage__clientId": (How.RESOURCE, "client id of the app's user-assigned managed identity"),
    "DYNAMICS_AUTHORITY": (
        How.PARAMETER_COMPUTED_DEFAULT,
        "defaults to this cloud's Entra endpoint and the tenant, so sovereign clouds need no override",
    ),
    "DYNAMICS_CLIENT_SECRET": (How.KEY_VAULT_ONE_OF, "when dynamicsCredentialType is 'secret'"),
    "DYNAMICS_CLIENT_CERTIFICATE": (How.KEY_VAULT_ONE_OF, "when dynamicsCredentialType is 'certificate'"),
    "MARKETO_CLIENT_SECRET": (How.KEY_VAULT, "the LaunchPoint service's secret"),
    "SYNC_MAPPING_FILE": (
        How.WHEN_GIVEN,
        "a path inside the deployed package; unset means the packaged default (an empty value fails validation)",
    ),
}

# Settings the Functions host reads that are not in the settings model.
HOST_SETTINGS: dict[str, str] = {
    "AzureWebJobsStorage__credential": "'managedidentity': identity-based host storage",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "where telemetry goes (no key: local auth is disabled)",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "telemetry authenticates with the app's identity",
}

# Flex Consumption moved these into functionAppConfig or dropped them ("Flex Consumption plan deprecations").
FLEX_UNSUPPORTED_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_TIME_ZONE",
}

# Built-in role definition ids -> (role, the type of resource it must be scoped to). Exactly these, nothing more.
EXPECTED_ROLES: dict[str, tuple[str, str]] = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": ("Storage Blob Data Owner", "Microsoft.Storage/storageAccounts"),
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": ("Storage Queue Data Contributor", "Microsoft.Storage/storageAccounts"),
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": ("Storage Table Data Contributor", "Microsoft.Storage/storageAccounts"),
    "3913510d-42f4-4e42-8a64-420c390055eb": ("Monitoring Metrics Publisher", "Microsoft.Insights/components"),
    "4633458b-17de-408a-b874-0445c86b69e6": ("Key Vault Secrets User", "Microsoft.KeyVault/vaults"),
}

MARKETO_SECRET_LINE = (
    "  MARKETO_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${marketoClientSecretSecret.properties.secretUri})'"
)
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=\$\{(?P<secret>\w+)\.properties\.secretUri\}\)$")
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


# ---------------------------------------------------------------------------------------------------------------------
# Reading the template (pycep gives identifiers and string literals alike as plain strings: a string equal to a
# parameter, variable or resource name is read as a reference to it).
# ---------------------------------------------------------------------------------------------------------------------


@cache
def _parser() -> BicepParser:
    return BicepParser()


def _is_call(expr: Any, name: str) -> bool:
    return isinstance(expr, dict) and set(expr) == {"function"} and expr["function"].get("type") == name


def _is_operator(expr: Any, name: str) -> bool:
    return isinstance(expr, dict) and set(expr) == {"operator"} and expr["operator"].get("type") == name


def _is_expression(expr: Any) -> bool:
    return isinstance(expr, dict) and len(expr) == 1 and next(iter(expr)) in ("function", "operator")


def _accessor_path(expr: Any) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything else."""
    if isinstance(expr, str):
        return [expr]
    if _is_operator(expr, "property_accessor"):
        operands = expr["operator"]["operands"]
        head, tail = _accessor_path(operands["operand_1"]), _accessor_path(operands["operand_2"])
        if head is not None and tail is not None:
            return head + tail
    return None


def _leaf_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _leaf_strings(key)
            yield from _leaf_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaf_strings(item)


def _identifiers(value: Any) -> set[str]:
    """Every name a value may refer to: bare strings, and the identifiers inside ${...} interpolations."""
    names: set[str] = set()
    for text in _leaf_strings(value):
        names.add(text.strip("'"))
        for inner in INTERPOLATION.findall(text):
            names.update(IDENTIFIER.findall(inner))
    return names


@dataclass(frozen=True)
class AppSetting:
    name: str
    value: Any
    condition: Any = None  # the condition it depends on (None: always set)
    branch: bool | None = None  # the branch of that condition that sets it


class Template:
    def __init__(self, parsed: dict[str, Any]) -> None:
        self.parameters: dict[str, Any] = parsed.get("parameters", {})
        self.variables: dict[str, Any] = parsed.get("variables", {})
        self.resources: dict[str, Any] = parsed.get("resources", {})
        self.outputs: dict[str, Any] = parsed.get("outputs", {})

    @classmethod
    def parse(cls, text: str) -> Template:
        return cls(_parser().parse(text=text))

    def resolve(self, expr: Any) -> Any:
        """Follow variable references to the value they stand for."""
        seen: set[str] = set()
        while isinstance(expr, str) and expr in self.variables and expr not in seen:
            seen.add(expr)
            expr = self.variables[expr]["value"]
        return expr

    def config(self, symbol: str) -> dict[str, Any]:
        return self.resources[symbol]["config"]

    def symbols_of_type(self, resource_type: str) -> list[str]:
        return [s for s, r in self.resources.items() if r["type"] == resource_type and not r["existing"]]

    def one(self, resource_type: str) -> str:
        symbols = self.symbols_of_type(resource_type)
        assert len(symbols) == 1, f"expected one {resource_type}, found {symbols}"
        return symbols[0]

    def is_secure(self, name: str) -> bool:
        return any(d.get("type") == "secure" for d in self.parameters[name]["decorators"])

    def resource_of(self, expr: Any) -> str | None:
        """The resource symbol at the root of `symbol.property...`, if any."""
        path = _accessor_path(self.resolve(expr))
        if path and path[0] in self.resources:
            return path[0]
        return None

    def parameter_of(self, expr: Any) -> str | None:
        """The parameter a value is: `param`, `string(param)`, or `resource.name` of a resource named by `param`."""
        expr = self.resolve(expr)
        if isinstance(expr, str) and expr in self.parameters:
            return expr
        if _is_call(expr, "string"):
            return self.parameter_of(expr["function"]["parameters"]["value_to_convert"])
        path = _accessor_path(expr)
        if path and len(path) == 2 and path[0] in self.resources and path[1] == "name":
            return self.parameter_of(self.config(path[0])["name"])
        return None

    def key_vault_secret_of(self, expr: Any) -> str | None:
        """The Key Vault secret resource a `@Microsoft.KeyVault(SecretUri=...)` value refers to."""
        expr = self.resolve(expr)
        match = KEY_VAULT_REFERENCE.match(expr) if isinstance(expr, str) else None
        if match is None:
            return None
        secret = match["secret"]
        if secret not in self.symbols_of_type("Microsoft.KeyVault/vaults/secrets"):
            return None
        if self.config(secret).get("parent") not in self.symbols_of_type("Microsoft.KeyVault/vaults"):
            return None
        return secret

    def app_settings(self) -> dict[str, AppSetting]:
        """The app settings of the function app: the `appsettings` config resource's properties, every branch."""
        configs = [
            s for s in self.symbols_of_type("Microsoft.Web/sites/config") if self.config(s).get("name") == "appsettings"
        ]
        assert len(configs) == 1, f"expected one appsettings config resource, found {configs}"
        found: dict[str, AppSetting] = {}
        self._collect(self.config(configs[0])["properties"], None, None, found)
        return found

    def _collect(self, expr: Any, condition: Any, branch: bool | None, found: dict[str, AppSetting]) -> None:
        expr = self.resolve(expr)
        if _is_call(expr, "union"):
            for argument in expr["function"]["parameters"].values():
                self._collect(argument, condition, branch, found)
        elif _is_operator(expr, "conditional"):
            assert condition is None, "app settings nested under two conditions are not read by this test"
            operands = expr["operator"]["operands"]
            self._collect(operands["true_value"], operands["condition"], True, found)
            self._collect(operands["false_value"], operands["condition"], False, found)
        elif isinstance(expr, dict) and not _is_expression(expr):
            for name, value in expr.items():
                assert name not in found, f"app setting {name} is set twice"
                found[name] = AppSetting(name, value, condition, branch)
        else:
            raise AssertionError(f"cannot read app settings from {expr!r}")


@cache
def _template_text() -> str:
    return TEMPLATE.read_text()


@cache
def _template() -> Template:
    return Template.parse(_template_text())


def _mutated(old: str, new: str) -> Template:
    text = _template_text()
    assert text.count(old) == 1, f"the template no longer contains {old!r} exactly once: update this test"
    return Template.parse(text.replace(old, new))


# ---------------------------------------------------------------------------------------------------------------------
# The comparisons (each returns one line per problem; empty means none)
# ---------------------------------------------------------------------------------------------------------------------


def _model_fields_by_name() -> dict[str, Any]:
    fields = {}
    for field in settings_model.Settings.model_fields.values():
        for name in field.validation_alias.choices:
            fields[str(name)] = field
    return fields


def settings_drift(template: Template) -> list[str]:
    """Every disagreement between the settings model and the app settings the template sets."""
    model = settings_model.setting_names()  # looked up at call time: the tests extend the model through it
    secrets = settings_model.secret_setting_names()
    decisions = {name: SETTING_DECISIONS.get(name, (How.PARAMETER, ""))[0] for name in model}
    expected = {name for name, how in decisions.items() if how is not How.NOT_SET} | set(HOST_SETTINGS)
    actual = template.app_settings()
    problems = []

    for name in sorted(expected - actual.keys()):
        what = "the Functions host needs it" if name in HOST_SETTINGS else "the settings model reads it"
        problems.append(f"{name}: {what} but infra/main.bicep does not set it")
    for name in sorted(actual.keys() - expected):
        if name in model:
            problems.append(f"{name}: set by infra/main.bicep although the decision is {decisions[name].name}")
        else:
            problems.append(f"{name}: set by infra/main.bicep but unknown to the settings model (stale)")
    for name in sorted(SETTING_DECISIONS.keys() - model):
        problems.append(f"{name}: has a decision in test_infra.py but is no longer in the settings model")
    for name in sorted(secrets & actual.keys()):
        if template.key_vault_secret_of(actual[name].value) is None:
            problems.append(f"{name}: a secret set in plain text (must be a Key Vault reference to a stored secret)")
    for name in sorted(secrets & {n for n, how in decisions.items() if how in (How.PARAMETER, How.RESOURCE)}):
        problems.append(f"{name}: a secret needs a Key Vault decision (or NOT_SET), not {decisions[name].name}")

    fields = _model_fields_by_name()
    for name in sorted(model & actual.keys() - {n for n, how in decisions.items() if how is How.NOT_SET}):
        problems += [f"{name}: {p}" for p in _decision_problems(template, actual[name], decisions[name], fields[name])]
    problems += _one_of_problems(actual, {n for n, how in decisions.items() if how is How.KEY_VAULT_ONE_OF})
    return problems


def _decision_problems(template: Template, setting: AppSetting, how: How, field: Any) -> list[str]:
    conditional = setting.condition is not None
    if how in (How.PARAMETER, How.PARAMETER_COMPUTED_DEFAULT, How.RESOURCE, How.KEY_VAULT) and conditional:
        return [f"set only under a condition, but the decision is {how.name}"]
    if how is How.RESOURCE:
        return [] if template.resource_of(setting.value) else ["not read from a resource the template deploys"]
    if how in (How.KEY_VAULT, How.KEY_VAULT_ONE_OF):
        return [] if template.key_vault_secret_of(setting.value) else ["not a Key Vault reference to a stored secret"]
    parameter = template.parameter_of(setting.value)
    if parameter is None:
        return ["not set from a parameter"]
    default = template.parameters[parameter]["default"]
    if how is How.WHEN_GIVEN:
        return _when_given_problems(setting, parameter)
    if how is How.PARAMETER_COMPUTED_DEFAULT:
        computed = _is_expression(default) or (isinstance(default, str) and "${" in default)
        return [] if computed else [f"parameter {parameter} has no computed default"]
    required = field.default is PydanticUndefined and field.default_factory is None
    if required and default is not None:
        return [f"required by the model, but parameter {parameter} has a default"]
    if not required and default is None:
        return [f"optional in the model (default {field.default!r}), but parameter {parameter} has no default"]
    if not required and str(default) != str(field.default):
        return [f"parameter {parameter} defaults to {default!r}, the model to {field.default!r}"]
    return []


def _when_given_problems(setting: AppSetting, parameter: str) -> list[str]:
    condition = setting.condition
    if _is_operator(condition, "not_op"):  # !empty(p) ? {...} : {}
        condition, branch = condition["operator"]["operands"]["operand_1"], not setting.branch
    else:  # empty(p) ? {} : {...}
        branch = setting.branch
    if _is_call(condition, "empty") and condition["function"]["parameters"]["item_to_test"] == parameter and not branch:
        return []
    return [f"must be set exactly when parameter {parameter} is not empty"]


def _one_of_problems(actual: dict[str, AppSetting], group: set[str]) -> list[str]:
    members = [actual[name] for name in sorted(group) if name in actual]
    if not members:
        return []
    names = ", ".join(sorted(group))
    conditions = {json.dumps(m.condition, sort_keys=True) for m in members}
    if len(members) != len(group) or len(group) != 2 or len(conditions) != 1 or None in (m.condition for m in members):
        return [f"{names}: exactly one of them must be set, chosen by one condition"]
    if {m.branch for m in members} != {True, False}:
        return [f"{names}: they must be set by opposite branches of their condition"]
    return []


def secure_parameter_leaks(template: Template) -> list[str]:
    """Places where a @secure() parameter is used other than as the value of a Key Vault secret."""
    secure = {name for name in template.parameters if template.is_secure(name)}
    secret_symbols = set(template.symbols_of_type("Microsoft.KeyVault/vaults/secrets"))
    places: list[tuple[str, Any]] = []
    for symbol, resource in template.resources.items():
        config = dict(resource["config"])
        if symbol in secret_symbols:
            properties = dict(config.get("properties", {}))
            properties.pop("value", None)
            config["properties"] = properties
        places.append((f"resource {symbol}", config))
    places += [(f"variable {name}", var["value"]) for name, var in template.variables.items()]
    places += [(f"output {name}", out["value"]) for name, out in template.outputs.items()]
    places += [(f"parameter {name} default", p["default"]) for name, p in template.parameters.items()]
    problems = [
        f"{where} uses secure parameter {name}"
        for where, value in places
        for name in sorted(secure & _identifiers(value))
    ]
    for symbol in sorted(secret_symbols):
        value = template.config(symbol).get("properties", {}).get("value")
        if not (isinstance(value, str) and value in secure):
            problems.append(f"Key Vault secret {symbol} is not stored from a secure parameter")
    return problems


def _app_identity(template: Template) -> str:
    """The one user-assigned identity of the function app (and its only identity)."""
    identity = template.config(template.one("Microsoft.Web/sites"))["identity"]
    assert identity["type"] == "UserAssigned", "the app's only identity must be the user-assigned one"
    (key,) = identity["userAssignedIdentities"]
    (symbol,) = {name for name in _identifiers(key) if name in template.resources}
    assert template.resources[symbol]["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities"
    return symbol


def role_assignment_problems(template: Template) -> list[str]:
    """The app's identity holds exactly EXPECTED_ROLES, each on the resource the app uses it for."""
    identity = _app_identity(template)
    actual = template.app_settings()
    storage = template.resource_of(actual["AzureWebJobsStorage__accountName"].value)
    insights = template.resource_of(actual["APPLICATIONINSIGHTS_CONNECTION_STRING"].value)
    vaults = {
        template.config(template.key_vault_secret_of(s.value))["parent"]
        for s in actual.values()
        if template.key_vault_secret_of(s.value)
    }
    used_scopes = {
        "Microsoft.Storage/storageAccounts": {storage},
        "Microsoft.Insights/components": {insights},
        "Microsoft.KeyVault/vaults": vaults,
    }
    problems, granted = [], set()
    for symbol in template.symbols_of_type("Microsoft.Authorization/roleAssignments"):
        config = template.config(symbol)
        if "properties" not in config:
            problems.append(f"{symbol}: a looped or conditional role assignment is not read by this test")
            continue
        properties, scope = config["properties"], config.get("scope")
        role = properties["roleDefinitionId"]
        role_id = (
            role["function"]["parameters"]["resource_name_1"] if _is_call(role, "subscription_resource_id") else None
        )
        if _accessor_path(properties["principalId"]) != [identity, "properties", "principalId"]:
            problems.append(f"{symbol}: granted to someone other than the app's identity {identity}")
        if properties.get("principalType") != "ServicePrincipal":
            problems.append(f"{symbol}: principalType must be ServicePrincipal")
        if role_id not in EXPECTED_ROLES:
            problems.append(f"{symbol}: role {role_id} is not one the app needs")
            continue
        role_name, scope_type = EXPECTED_ROLES[role_id]
        if scope not in template.resources or scope not in used_scopes[scope_type]:
            problems.append(f"{symbol}: {role_name} must be scoped to the {scope_type} the app uses, not {scope}")
            continue
        granted.add(role_id)
    for role_id in sorted(EXPECTED_ROLES.keys() - granted):
        problems.append(f"{EXPECTED_ROLES[role_id][0]} ({role_id}) is not granted to the app's identity")
    return problems


# ---------------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(INFRA.rglob("*.bicep")), ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_files_parse(path: Path) -> None:
    parsed = _parser().parse(file_path=path)
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"
    remote = [name for name, module in parsed.get("modules", {}).items() if module["type"] != "local"]
    assert remote == [], "registry modules need a download at build time: declare the resources instead"


def test_app_settings_match_the_settings_model_exactly() -> None:
    assert settings_drift(_template()) == []


def test_every_model_setting_has_a_known_fate() -> None:
    template = _template()
    actual = template.app_settings()
    for name in settings_model.setting_names():
        how = SETTING_DECISIONS.get(name, (How.PARAMETER, ""))[0]
        assert (name in actual) is (how is not How.NOT_SET), name


def test_a_setting_added_to_the_model_but_not_the_template_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    real = settings_model.setting_names()
    monkeypatch.setattr(settings_model, "setting_names", lambda: real | {"SYNC_SCHEDULE_INVOICE"})
    assert settings_drift(_template()) == [
        "SYNC_SCHEDULE_INVOICE: the settings model reads it but infra/main.bicep does not set it"
    ]


def test_a_setting_removed_from_the_model_is_reported_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    real = settings_model.setting_names()
    monkeypatch.setattr(settings_model, "setting_names", lambda: real - {"SYNC_TABLE_PREFIX", "SYNC_CA_BUNDLE"})
    assert settings_drift(_template()) == [
        "SYNC_TABLE_PREFIX: set by infra/main.bicep but unknown to the settings model (stale)",
        "SYNC_CA_BUNDLE: has a decision in test_infra.py but is no longer in the settings model",
    ]


def test_a_setting_that_becomes_secret_must_move_to_key_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    real = settings_model.secret_setting_names()
    monkeypatch.setattr(settings_model, "secret_setting_names", lambda: real | {"MARKETO_CLIENT_ID"})
    assert settings_drift(_template()) == [
        "MARKETO_CLIENT_ID: a secret set in plain text (must be a Key Vault reference to a stored secret)",
        "MARKETO_CLIENT_ID: a secret needs a Key Vault decision (or NOT_SET), not PARAMETER",
    ]


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            "  SYNC_SCHEDULE_LEAD: syncScheduleLead\n",
            "",
            "SYNC_SCHEDULE_LEAD: the settings model reads it but infra/main.bicep does not set it",
        ),
        (
            "  SYNC_TABLE_PREFIX: syncTablePrefix\n",
            "  SYNC_TABLE_PREFIX: syncTablePrefix\n  SYNC_LEGACY_MODE: 'on'\n",
            "SYNC_LEGACY_MODE: set by infra/main.bicep but unknown to the settings model (stale)",
        ),
        (
            "  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=",
            "  FUNCTIONS_WORKER_RUNTIME: 'python'\n  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=",
            "FUNCTIONS_WORKER_RUNTIME: set by infra/main.bicep but unknown to the settings model (stale)",
        ),
        (
            "param syncScheduleContact string = '0 */1 * * * *'",
            "param syncScheduleContact string = '0 */5 * * * *'",
            "SYNC_SCHEDULE_CONTACT: parameter syncScheduleContact defaults to '0 */5 * * * *', the model to "
            "'0 */1 * * * *'",
        ),
        (
            "param dynamicsUrl string\n",
            "param dynamicsUrl string = 'https://contoso.crm.dynamics.com'\n",
            "DYNAMICS_URL: required by the model, but parameter dynamicsUrl has a default",
        ),
        (
            "  AzureWebJobsStorage__accountName: storage.name\n",
            "  AzureWebJobsStorage: 'UseDevelopmentStorage=true'\n  AzureWebJobsStorage__accountName: storage.name\n",
            "AzureWebJobsStorage: set by infra/main.bicep although the decision is NOT_SET\n"
            "AzureWebJobsStorage: a secret set in plain text (must be a Key Vault reference to a stored secret)",
        ),
        (
            "var optionalAppSettings = empty(syncMappingFile) ? {} : { SYNC_MAPPING_FILE: syncMappingFile }",
            "var optionalAppSettings = { SYNC_MAPPING_FILE: syncMappingFile }",
            "SYNC_MAPPING_FILE: must be set exactly when parameter syncMappingFile is not empty",
        ),
    ],
    ids=["missing", "stale", "flex-unsupported", "default-drift", "required-drift", "not-set", "when-given"],
)
def test_template_drift_is_reported(old: str, new: str, problem: str) -> None:
    assert settings_drift(_mutated(old, new)) == problem.splitlines()


def test_no_secret_is_set_in_plain_text() -> None:
    template = _template()
    actual = template.app_settings()
    secrets = settings_model.secret_setting_names() & actual.keys()
    assert secrets == {"DYNAMICS_CLIENT_SECRET", "DYNAMICS_CLIENT_CERTIFICATE", "MARKETO_CLIENT_SECRET"}
    for name in secrets:
        assert template.key_vault_secret_of(actual[name].value), name
    assert secure_parameter_leaks(template) == []
    assert "listKeys" not in _template_text() and "AccountKey" not in _template_text()


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            MARKETO_SECRET_LINE,
            "  MARKETO_CLIENT_SECRET: marketoClientSecret",
            "variable syncAppSettings uses secure parameter marketoClientSecret",
        ),
        (
            "output keyVaultName string = keyVault.name",
            "output keyVaultName string = '${keyVault.name}/${dynamicsClientCredential}'",
            "output keyVaultName uses secure parameter dynamicsClientCredential",
        ),
    ],
    ids=["plain-setting", "output"],
)
def test_a_secure_parameter_outside_key_vault_is_reported(old: str, new: str, problem: str) -> None:
    assert secure_parameter_leaks(_mutated(old, new)) == [problem]


def test_a_plain_text_secret_setting_is_reported() -> None:
    template = _mutated(
        MARKETO_SECRET_LINE,
        "  MARKETO_CLIENT_SECRET: 'hunter2'",
    )
    assert settings_drift(template) == [
        "MARKETO_CLIENT_SECRET: a secret set in plain text (must be a Key Vault reference to a stored secret)",
        "MARKETO_CLIENT_SECRET: not a Key Vault reference to a stored secret",
    ]


def test_access_goes_through_role_assignments_of_the_app_identity() -> None:
    template = _template()
    assert role_assignment_problems(template) == []
    site = template.config(template.one("Microsoft.Web/sites"))
    identity = _app_identity(template)
    # The app starts only after its roles exist.
    assert set(template.symbols_of_type("Microsoft.Authorization/roleAssignments")) <= set(site["dependsOn"])
    # Key Vault references, host storage and the deployment package all use that identity.
    assert _accessor_path(site["properties"]["keyVaultReferenceIdentity"]) == [identity, "id"]
    actual = template.app_settings()
    assert actual["AzureWebJobsStorage__credential"].value == "managedidentity"
    assert _accessor_path(actual["AzureWebJobsStorage__clientId"].value) == [identity, "properties", "clientId"]
    assert f"ClientId=${{{identity}.properties.clientId}};Authorization=AAD" == (
        actual["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].value
    )
    authentication = site["properties"]["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert authentication["type"] == "UserAssignedIdentity"
    assert _accessor_path(authentication["userAssignedIdentityResourceId"]) == [identity, "id"]


@pytest.mark.parametrize(
    ("old", "new", "problems"),
    [
        (
            "roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')",
            "roleDefinitions', '17d1049b-9a84-46fb-8f53-869881c3d3ab')",
            [
                "storageTableDataContributor: role 17d1049b-9a84-46fb-8f53-869881c3d3ab is not one the app needs",
                "Storage Table Data Contributor (0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3) is not granted to the app's "
                "identity",
            ],
        ),
        (
            "  name: guid(keyVault.id, appIdentity.id, '4633458b-17de-408a-b874-0445c86b69e6')\n  scope: keyVault\n",
            "  name: guid(keyVault.id, appIdentity.id, '4633458b-17de-408a-b874-0445c86b69e6')\n  scope: storage\n",
            [
                "keyVaultSecretsUser: Key Vault Secrets User must be scoped to the Microsoft.KeyVault/vaults the app "
                "uses, not storage",
                "Key Vault Secrets User (4633458b-17de-408a-b874-0445c86b69e6) is not granted to the app's identity",
            ],
        ),
    ],
    ids=["wrong-role", "wrong-scope"],
)
def test_role_assignment_drift_is_reported(old: str, new: str, problems: list[str]) -> None:
    assert role_assignment_problems(_mutated(old, new)) == problems


def test_storage_refuses_shared_keys() -> None:
    template = _template()
    properties = template.config(template.one("Microsoft.Storage/storageAccounts"))["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    queue = template.config(template.one("Microsoft.Storage/storageAccounts/queueServices/queues"))
    assert template.parameter_of(queue["name"]) == "syncFullSyncQueue"


def test_application_insights_accepts_entra_tokens_only() -> None:
    template = _template()
    properties = template.config(template.one("Microsoft.Insights/components"))["properties"]
    assert properties["DisableLocalAuth"] is True
    workspace = template.resource_of(properties["WorkspaceResourceId"])
    assert template.resources[workspace]["type"] == "Microsoft.OperationalInsights/workspaces"


def test_key_vault_uses_rbac_with_soft_delete_and_purge_protection() -> None:
    template = _template()
    properties = template.config(template.one("Microsoft.KeyVault/vaults"))["properties"]
    assert properties["enableRbacAuthorization"] is True
    assert "accessPolicies" not in properties
    assert properties["enableSoftDelete"] is True
    assert properties["enablePurgeProtection"] is True


def test_plan_is_flex_consumption_linux_and_runtime_python_3_11() -> None:
    template = _template()
    plan = template.config(template.one("Microsoft.Web/serverfarms"))
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True  # Linux
    site = template.config(template.one("Microsoft.Web/sites"))
    assert site["kind"] == "functionapp,linux"
    assert template.resource_of(site["properties"]["serverFarmId"]) == template.one("Microsoft.Web/serverfarms")
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["type"] == "blobContainer"
    assert set(config["scaleAndConcurrency"]) >= {"maximumInstanceCount", "instanceMemoryMB"}
    # One source of app settings (the appsettings resource replaces whatever siteConfig would set).
    assert "appSettings" not in site["properties"].get("siteConfig", {})
    assert FLEX_UNSUPPORTED_SETTINGS.isdisjoint(template.app_settings())


def test_example_parameters_file_fits_the_template() -> None:
    template = _template()
    document = json.loads(PARAMETERS_FILE.read_text())
    given = set(document["parameters"])
    assert given <= set(template.parameters), given - set(template.parameters)
    secure = {name for name in template.parameters if template.is_secure(name)}
    assert given.isdisjoint(secure), "secrets are typed at deployment time, never kept in a file"
    required = {name for name, p in template.parameters.items() if p["default"] is None} - secure
    assert required <= given, f"the example misses required parameters {required - given}"


# ---------------------------------------------------------------------------------------------------------------------
# Binding settings: every %NAME% a function binding names (and every connection it names) must be an app setting both
# locally (local.settings.example.json, what `func start` reads) and in Azure (the template's app settings).
# ---------------------------------------------------------------------------------------------------------------------
LOCAL_SETTINGS = INFRA.parent / "local.settings.example.json"
BINDING_SETTING = re.compile(r"%([A-Za-z0-9_]+)%")


def _binding_settings(functions: list[Any]) -> dict[str, str]:
    """Setting name -> the function whose binding names it: %NAME% in any binding value, and `connection` names."""
    names: dict[str, str] = {}
    for function in functions:
        for binding in function.get_bindings():
            for key, value in binding.get_dict_repr().items():
                text = value.value if isinstance(value, Enum) else value
                if not isinstance(text, str):
                    continue
                for name in BINDING_SETTING.findall(text):
                    names.setdefault(name, function.get_function_name())
                if key == "connection":
                    names.setdefault(text, function.get_function_name())
    return names


def _is_set(name: str, settings: set[str]) -> bool:
    # a connection may be identity-based: AzureWebJobsStorage__accountName and friends stand for AzureWebJobsStorage
    return name in settings or any(s.startswith(f"{name}__") for s in settings)


def binding_setting_problems(bindings: dict[str, str], local: set[str], azure: set[str]) -> list[str]:
    problems = []
    for name, function in sorted(bindings.items()):
        if not _is_set(name, local):
            problems.append(f"{name} (named by {function}) is missing from local.settings.example.json")
        if not _is_set(name, azure):
            problems.append(f"{name} (named by {function}) is not an app setting in infra/main.bicep")
    return problems


def _local_settings() -> set[str]:
    return set(json.loads(LOCAL_SETTINGS.read_text())["Values"])


def test_every_setting_a_binding_names_is_set_locally_and_in_azure() -> None:
    from tests.e2e.functions import FUNCTIONS

    bindings = _binding_settings(FUNCTIONS)
    assert {"SYNC_FULL_SYNC_QUEUE", "SYNC_SCHEDULE_LEAD", "AzureWebJobsStorage"} <= bindings.keys()
    assert binding_setting_problems(bindings, _local_settings(), set(_template().app_settings())) == []


def test_a_binding_setting_missing_from_either_file_is_reported() -> None:
    local = _local_settings() - {"SYNC_FULL_SYNC_QUEUE"}
    azure = set(_template().app_settings()) - {"SYNC_SCHEDULE_LEAD"}
    bindings = {"SYNC_FULL_SYNC_QUEUE": "sync_full_worker", "SYNC_SCHEDULE_LEAD": "sync_lead"}
    assert binding_setting_problems(bindings, local, azure) == [
        "SYNC_FULL_SYNC_QUEUE (named by sync_full_worker) is missing from local.settings.example.json",
        "SYNC_SCHEDULE_LEAD (named by sync_lead) is not an app setting in infra/main.bicep",
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Alerts: an action group e-mails the operator; four log search rules read only the log lines the app writes
# (sync/metrics.py: names and fields).
# ---------------------------------------------------------------------------------------------------------------------
LOG_LINE_NAME = re.compile(r'startswith "([A-Z_]+) "')
LOG_LINE_FIELD = re.compile(r'extract\("([a-z0-9_]+)=')
ALERTS = {  # rule -> (the line it reads, the fields it needs, the parameter its threshold comes from)
    "alertRecordErrors": ({"SYNC_CYCLE"}, {"stream", "record_errors"}, "alertRecordErrorsThreshold"),
    "alertNoSuccessfulCycle": ({"SYNC_CYCLE"}, {"stream", "outcome", "complete"}, "alertNoSuccessMinutes"),
    "alertFullSyncFailed": ({"SYNC_FULL_SYNC"}, {"job", "state"}, None),
    "alertMarketoQuota": ({"SYNC_CYCLE", "SYNC_FULL_SYNC"}, {"marketo_calls"}, "alertMarketoQuotaPercent"),
}


def alert_problems(template: Template) -> list[str]:
    from sync import metrics

    problems = []
    groups = template.symbols_of_type("Microsoft.Insights/actionGroups")
    if len(groups) != 1:
        return [f"expected one action group, found {groups}"]
    receivers = template.config(groups[0])["properties"].get("emailReceivers") or []
    if [template.parameter_of(r.get("emailAddress")) for r in receivers] != ["alertEmail"]:
        problems.append("the action group must e-mail exactly the alertEmail parameter")
    rules = template.symbols_of_type("Microsoft.Insights/scheduledQueryRules")
    if sorted(rules) != sorted(ALERTS):
        problems.append(f"alert rules are {sorted(rules)}, expected {sorted(ALERTS)}")
    for rule in sorted(set(rules) & set(ALERTS)):
        properties = template.config(rule)["properties"]
        lines, fields, parameter = ALERTS[rule]
        if [template.resource_of(s) for s in properties["scopes"]] != ["appInsights"]:
            problems.append(f"{rule}: must query the app's Application Insights")
        if [template.resource_of(a) for a in properties["actions"]["actionGroups"]] != [groups[0]]:
            problems.append(f"{rule}: must notify the action group")
        [criterion] = properties["criteria"]["allOf"]
        query = template.resolve(criterion["query"])
        text = " ".join(_leaf_strings(query))
        read_lines = set(LOG_LINE_NAME.findall(text))
        read_fields = set(LOG_LINE_FIELD.findall(text))
        if read_lines != lines:
            problems.append(f"{rule}: reads the lines {sorted(read_lines)}, expected {sorted(lines)}")
        written = {f for name in read_lines if name in metrics.LINES for f in metrics.LINES[name]}
        for field in sorted(read_fields - written):
            problems.append(f"{rule}: reads {field}=, which no line it reads writes")
        if not fields <= read_fields:
            problems.append(f"{rule}: does not read {sorted(fields - read_fields)}")
        measure = criterion.get("metricMeasureColumn")
        if measure is not None and f"summarize {measure} =" not in text:
            problems.append(f"{rule}: its query does not produce the measure column {measure}")
        if parameter is not None and parameter not in _identifiers(criterion) | _identifiers(query):
            problems.append(f"{rule}: its threshold does not come from {parameter}")
    return problems


def test_alert_rules_email_the_operator_and_read_what_the_app_writes() -> None:
    template = _template()
    assert alert_problems(template) == []
    assert not template.parameters["alertEmail"]["default"], "the operator's address is a required parameter"
    quota = template.config("alertMarketoQuota")["properties"]["criteria"]["allOf"][0]["threshold"]
    assert {"marketoDailyCallBudget", "alertMarketoQuotaPercent"} <= _identifiers(quota)


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'record_errors = toint(extract("record_errors=',
            'record_errors = toint(extract("errors_stored=',
            "alertRecordErrors: reads errors_stored=, which no line it reads writes",
        ),
        (
            'where message startswith "SYNC_FULL_SYNC " | extend job',
            'where message startswith "SYNC_FULLSYNC " | extend job',
            "alertFullSyncFailed: reads the lines ['SYNC_FULLSYNC'], expected ['SYNC_FULL_SYNC']",
        ),
        (
            "        emailAddress: alertEmail\n",
            "        emailAddress: 'ops@example.com'\n",
            "the action group must e-mail exactly the alertEmail parameter",
        ),
    ],
)
def test_alert_drift_is_reported(old: str, new: str, problem: str) -> None:
    assert problem in alert_problems(_mutated(old, new))


def test_the_app_writes_its_metric_lines_with_exactly_the_documented_fields() -> None:
    from sync import metrics

    line = metrics.metric_line(
        metrics.FULL_SYNC, job="j1", stream="lead", phase="to_marketo", state="failed", marketo_calls=12
    )
    assert line == "SYNC_FULL_SYNC job=j1 stream=lead phase=to_marketo state=failed marketo_calls=12"
    assert re.search(r"state=([^ ]+)", line)[1] == "failed"  # type: ignore[index]
    with pytest.raises(ValueError, match="SYNC_CYCLE takes the fields stream, outcome"):
        metrics.metric_line(metrics.CYCLE, stream="lead")
    readme = (INFRA.parent / "README.md").read_text()
    for name, fields in metrics.LINES.items():
        assert f"`{name}`" in readme and all(f"`{f}`" in readme for f in fields), f"README must document {name}"
