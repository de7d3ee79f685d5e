"""The Microsoft Entra ID half: OpenID discovery and the v2.0 token endpoint (client credentials, with a client
secret or a certificate-signed client assertion), app registrations, and bearer-token validation.

Access tokens are JWTs signed by a key only this emulator holds, with the claims Dataverse cares about
(`aud` = the org URL, `tid`, `appid`, `oid`, `iat`, `exp`). A token for another audience, signed by another key,
expired, or issued before a revocation is refused with 401.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class AppRegistration:
    """An Entra app registration plus the Dataverse application user it signs in as."""

    name: str
    display_name: str
    client_id: str
    client_secret: str
    systemuser_id: str
    certificate_pem: str = ""  # the public certificate registered on the app
    private_key_pem: str = ""  # handed to tests so they can sign assertions; never logged
    thumbprints: set[str] = field(default_factory=set)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "systemuserid": self.systemuser_id,
            "certificate_pem": self.certificate_pem + self.private_key_pem,
        }


def _make_certificate(common_name: str) -> tuple[str, str, set[str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = time.time()
    import datetime as dt

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(now - 3600, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 365 * 86400, dt.UTC))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    thumbprints = {
        base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("="),
        base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("="),
    }
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert_pem, key_pem, thumbprints


class TokenError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def body(self, trace_id: str) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
        description = f"{self.description} Trace ID: {trace_id} Correlation ID: {uuid.uuid4()} Timestamp: {stamp}"
        return {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": str(uuid.uuid4()),
            "error_uri": "https://login.microsoftonline.com/error?code=" + str(self.code),
        }


@dataclass
class TokenClaims:
    client_id: str
    app: AppRegistration
    issued_at: float
    expires_at: float


class Authority:
    """App registrations of one tenant, and the tokens it issues."""

    def __init__(self, tenant_id: str, token_lifetime: int = 3599) -> None:
        self.tenant_id = tenant_id
        self.token_lifetime = token_lifetime
        self._signing_key = secrets.token_bytes(32)
        self.apps: dict[str, AppRegistration] = {}
        self.revoked_before: dict[str, float] = {}  # client id ("*" = all) -> tokens issued before are revoked
        self.clock_offset = 0.0

    def now(self) -> float:
        return time.time() + self.clock_offset

    def register(
        self, name: str, display_name: str, systemuser_id: str, *, with_certificate: bool = True
    ) -> AppRegistration:
        cert_pem, key_pem, thumbprints = _make_certificate(display_name) if with_certificate else ("", "", set())
        app = AppRegistration(
            name=name,
            display_name=display_name,
            client_id=str(uuid.uuid4()),
            client_secret=secrets.token_urlsafe(30),
            systemuser_id=systemuser_id,
            certificate_pem=cert_pem,
            private_key_pem=key_pem,
            thumbprints=thumbprints,
        )
        self.apps[app.client_id] = app
        return app

    def by_name(self, name: str) -> AppRegistration | None:
        return next((app for app in self.apps.values() if app.name == name), None)

    # --- Entra endpoints

    def discovery(self, base: str, tenant: str) -> dict[str, Any]:
        self._check_tenant(tenant)
        root = f"{base}/{tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "ver", "oid"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _check_tenant(self, tenant: str) -> None:
        if tenant.lower() != self.tenant_id.lower():
            raise TokenError(
                400,
                "invalid_tenant",
                90002,
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud.",
            )

    def issue(
        self, tenant: str, form_body: bytes, org_url: str, basic_auth: tuple[str, str] | None
    ) -> tuple[dict[str, Any], AppRegistration]:
        """Client credentials grant. Returns the token response and the app, or raises TokenError."""
        self._check_tenant(tenant)
        form = {k: v[0] for k, v in parse_qs(form_body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
        if not grant:
            raise TokenError(
                400,
                "invalid_request",
                900144,
                "AADSTS900144: The request body must contain the following parameter: 'grant_type'.",
            )
        if grant != "client_credentials":
            raise TokenError(
                400, "unsupported_grant_type", 70003, "AADSTS70003: The app requested an unsupported grant type."
            )
        client_id = form.get("client_id") or (basic_auth[0] if basic_auth else "")
        if not client_id:
            raise TokenError(
                400,
                "invalid_request",
                900144,
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            )
        app = self.apps.get(client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'. This can happen if the application has not been installed by the administrator "
                "of the tenant or consented to by any user in the tenant.",
            )
        secret = form.get("client_secret") or (basic_auth[1] if basic_auth else None)
        assertion = form.get("client_assertion")
        if assertion is not None:
            self._check_assertion(app, form.get("client_assertion_type", ""), assertion, f"{org_url}/{tenant}")
        elif secret is None:
            raise TokenError(
                400,
                "invalid_client",
                7000216,
                "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
            )
        elif not secrets.compare_digest(secret.encode(), app.client_secret.encode()):
            raise TokenError(
                400,
                "invalid_client",
                7000215,
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
                f"client secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            )
        scope = form.get("scope", "")
        resource = org_url.rstrip("/")
        if scope not in (f"{resource}/.default", f"{resource}//.default"):
            if not scope.endswith("/.default"):
                raise TokenError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must "
                    "have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                )
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"AADSTS500011: The resource principal named {scope.rsplit('/.default', 1)[0]} was not found in the "
                f"tenant named {self.tenant_id}. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant.",
            )
        issued = self.now()
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": int(issued),
            "nbf": int(issued),
            "exp": int(issued + self.token_lifetime),
            "appid": app.client_id,
            "azp": app.client_id,
            "oid": app.systemuser_id,
            "sub": app.systemuser_id,
            "tid": self.tenant_id,
            "idtyp": "app",
            "ver": "1.0",
            "jti": uuid.uuid4().hex,
            "xms_emu_iat": issued,  # sub-second issue time, so a revocation spares tokens issued right after it
        }
        token = jwt.encode(claims, self._signing_key, algorithm="HS256", headers={"kid": "emulator"})
        response = {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }
        return response, app

    def _check_assertion(self, app: AppRegistration, assertion_type: str, assertion: str, authority: str) -> None:
        def invalid(code: int, text: str) -> TokenError:
            return TokenError(400, "invalid_client", code, text)

        if assertion_type != CLIENT_ASSERTION_TYPE:
            raise invalid(
                7000216,
                f"AADSTS7000216: 'client_assertion_type' must be '{CLIENT_ASSERTION_TYPE}'.",
            )
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise invalid(50027, "AADSTS50027: JWT token is invalid or malformed.") from exc
        thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
        if not app.certificate_pem or thumbprint not in app.thumbprints:
            raise invalid(
                700027,
                f"AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on "
                f"application. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}', "
                f"Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for "
                f"app Id '{app.client_id}'.]",
            )
        public_key = x509.load_pem_x509_certificate(app.certificate_pem.encode()).public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):  # RS256 and PS256 below: an RSA key or nothing
            raise invalid(700027, "AADSTS700027: Client assertion failed signature validation. (not an RSA key)")
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256", "PS256"],
                options={"verify_aud": False, "require": ["exp", "iss", "sub"]},
                leeway=300,
            )
        except jwt.PyJWTError as exc:
            raise invalid(700027, f"AADSTS700027: Client assertion failed signature validation. ({exc})") from exc
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(isinstance(a, str) and a.startswith(authority) for a in audiences):
            raise invalid(
                700212,
                "AADSTS700212: No matching federated identity record found for presented assertion audience "
                f"'{audience}'.",
            )
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise invalid(700023, "AADSTS700023: Client assertion audience claim does not match Realm issuer.")

    # --- bearer validation

    def validate(self, authorization: str | None, org_url: str) -> TokenClaims | None:
        """The caller of a Web API request, or None (-> 401)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        try:
            claims = jwt.decode(
                token,
                self._signing_key,
                algorithms=["HS256"],
                audience=[org_url.rstrip("/"), org_url.rstrip("/") + "/"],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},  # the emulated clock rules
            )
        except jwt.PyJWTError:
            return None
        if claims.get("tid") != self.tenant_id:
            return None
        if claims["exp"] <= self.now():
            return None
        app = self.apps.get(claims.get("appid", ""))
        if app is None:
            return None
        revoked = max(self.revoked_before.get("*", 0), self.revoked_before.get(app.client_id, 0))
        issued = float(claims.get("xms_emu_iat", claims["iat"]))
        if issued < revoked:
            return None
        return TokenClaims(app.client_id, app, issued, claims["exp"])

    def revoke(self, client_id: str | None = None) -> None:
        self.revoked_before[client_id or "*"] = self.now()
