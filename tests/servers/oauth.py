"""A real OAuth 2.0 authorization server (Authlib) on 127.0.0.1 for tests.

Authorization code + PKCE, refresh tokens with rotation, revocation (RFC 7009),
introspection (RFC 7662, answered for any caller so Dovecot's oauth2 passdb can
check XOAUTH2 logins), /userinfo and an id_token (HS256, keyed with the client
secret) in every token response. Storage is in memory; consent is automatic for
the user set with login_as().
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.common.security import generate_token
from authlib.common.urls import add_params_to_uri
from authlib.consts import default_json_headers
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    ClientMixin,
    TokenMixin,
    grants,
    list_to_scope,
    scope_to_list,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, Response, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

HOST = "127.0.0.1"
DEFAULT_USER = "alice@example.com"
DEFAULT_EXPIRES_IN = 3600
CODE_LIFETIME = 600  # seconds an authorization code stays usable
TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


# -- models ----------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """The resource owner: only an address."""

    email: str

    def get_user_id(self) -> str:
        return self.email


@dataclass
class Client(ClientMixin):
    """A registered client. client_secret None makes it public (auth method "none")."""

    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    scope: str | None = None  # None: any requested scope is granted

    @property
    def redirect_uri(self) -> str:
        """The first (default) redirect URI."""
        return self.redirect_uris[0]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if self.scope is None:
            return scope or ""
        if not scope:
            return self.scope
        allowed = set(scope_to_list(self.scope))
        return list_to_scope([s for s in scope_to_list(scope) if s in allowed])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and hmac.compare_digest(
            self.client_secret, client_secret
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method == "none":
            return self.client_secret is None
        return method in ("client_secret_basic", "client_secret_post") and (
            self.client_secret is not None
        )

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    user: User
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    expires_at: float

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at


@dataclass
class Token(TokenMixin):
    """One token response: an access token and maybe a refresh token.

    grant_id ties together every token issued from one authorization code
    (the original and all its refreshes).
    """

    access_token: str
    refresh_token: str | None
    client: Client
    user: User
    scope: str
    issued_at: float
    expires_in: int
    grant_id: str
    nonce: str | None = None
    access_token_revoked: bool = False
    refresh_token_revoked: bool = False
    expires_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.expires_at = self.issued_at + self.expires_in

    def check_client(self, client: ClientMixin) -> bool:
        return self.client.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.access_token_revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        return self.client

    @property
    def access_active(self) -> bool:
        return not (self.is_expired() or self.is_revoked())


@dataclass
class _RefreshTokenView(TokenMixin):
    """A refresh token as seen by introspection (token_type_hint=refresh_token)."""

    token: Token

    def check_client(self, client: ClientMixin) -> bool:
        return self.token.check_client(client)

    def get_scope(self) -> str:
        return self.token.scope

    def get_expires_in(self) -> int:
        return 0

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return self.token.refresh_token_revoked

    def get_user(self) -> User:
        return self.token.user

    def get_client(self) -> Client:
        return self.token.client


# -- grants and endpoints ----------------------------------------------------


def _owner(authlib_server: AuthorizationServer) -> OAuthTestServer:
    return authlib_server.owner  # type: ignore[attr-defined]


class _AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def save_authorization_code(self, code: str, req: Any) -> None:
        data = req.payload.data
        owner = _owner(self.server)
        item = AuthorizationCode(
            code=code,
            client_id=req.client.client_id,
            user=req.user,
            redirect_uri=req.payload.redirect_uri,
            scope=req.scope or "",
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            nonce=data.get("nonce"),
            expires_at=time.time() + CODE_LIFETIME,
        )
        with owner._lock:
            owner._codes[code] = item

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        owner = _owner(self.server)
        with owner._lock:
            item = owner._codes.get(code)
        if item and item.client_id == client.client_id and not item.is_expired():
            return item
        return None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        owner = _owner(self.server)
        with owner._lock:
            owner._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        return authorization_code.user


class _RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def issue_token(self, user: User, refresh_token: Token) -> dict:
        scope = self.request.payload.scope or refresh_token.get_scope()
        return self.generate_token(
            user=user,
            scope=scope,
            include_refresh_token=_owner(self.server).rotate_refresh_tokens,
        )

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        owner = _owner(self.server)
        with owner._lock:
            token = owner._by_refresh.get(refresh_token)
        if token and not token.refresh_token_revoked:
            return token
        return None

    def authenticate_user(self, refresh_token: Token) -> User:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        owner = _owner(self.server)
        if owner.rotate_refresh_tokens:
            with owner._lock:
                refresh_token.refresh_token_revoked = True


class _RevocationEndpoint(RevocationEndpoint):
    """RFC 7009. Client auth by basic or post; a bare token=… (Google style) works too."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def authenticate_endpoint_client(self, req: Any) -> Client | None:
        has_credentials = "authorization" in req.headers or req.form.get("client_id")
        if not has_credentials:
            req.client = None
            return None
        return super().authenticate_endpoint_client(req)

    def authenticate_token(self, req: Any, client: Client | None) -> Token | None:
        self.check_params(req, client)
        token = self.query_token(req.form["token"], req.form.get("token_type_hint"))
        if token and client is not None and not token.check_client(client):
            return None  # RFC 7009 2.2: answer 200 either way
        return token

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        owner = _owner(self.server)
        with owner._lock:
            return owner._by_access.get(token_string) or owner._by_refresh.get(token_string)

    def revoke_token(self, token: Token, req: Any) -> None:
        owner = _owner(self.server)
        with owner._lock:
            owner.revocations.append(req.form["token"])
            if req.form["token"] == token.refresh_token:
                # Revoking a refresh token ends the whole grant (RFC 7009 2.1).
                for other in owner._tokens:
                    if other.grant_id == token.grant_id:
                        other.access_token_revoked = True
                        other.refresh_token_revoked = True
            else:
                token.access_token_revoked = True


class _IntrospectionEndpoint(IntrospectionEndpoint):
    """RFC 7662, answered for any caller: Dovecot sends empty client credentials."""

    def create_endpoint_response(self, req: Any) -> tuple[int, dict, list]:
        self.check_params(req, None)
        token = self.query_token(req.form["token"], req.form.get("token_type_hint"))
        owner = _owner(self.server)
        payload = self.create_introspection_payload(token)
        with owner._lock:
            owner.introspections.append((req.form["token"], bool(payload.get("active"))))
        return 200, payload, default_json_headers

    def check_permission(self, token: Any, client: Any, req: Any) -> bool:
        return True

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenMixin | None:
        owner = _owner(self.server)
        with owner._lock:
            if token_type_hint != "refresh_token":
                token = owner._by_access.get(token_string)
                if token:
                    return token
            if token_type_hint != "access_token":
                token = owner._by_refresh.get(token_string)
                if token:
                    return _RefreshTokenView(token)
        return None

    def introspect_token(self, token: TokenMixin) -> dict:
        base = token.token if isinstance(token, _RefreshTokenView) else token
        assert isinstance(base, Token)
        payload = {
            "active": True,
            "username": base.user.email,
            "email": base.user.email,
            "sub": base.user.email,
            "client_id": base.client.client_id,
            "scope": base.scope,
            "token_type": "refresh_token" if token is not base else "Bearer",
            "iat": int(base.issued_at),
            "iss": _owner(self.server).base_url,
        }
        if token is base:
            payload["exp"] = int(base.expires_at)
        return payload


# -- id_token ----------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict, secret: str | None) -> str:
    """A compact JWT: HS256 keyed with `secret`, or alg "none" without one."""
    header = {"alg": "HS256" if secret else "none", "typ": "JWT"}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = b""
    if secret:
        signature = hmac.new(
            secret.encode(), signing_input.encode("ascii"), hashlib.sha256
        ).digest()
    return signing_input + "." + _b64url(signature)


def decode_jwt(token: str, secret: str | None = None) -> dict:
    """The claims of a JWT made by make_jwt(); checks the HS256 signature when `secret` is given."""
    header_b64, claims_b64, signature_b64 = token.split(".")

    def unb64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    if secret is not None:
        expected = hmac.new(
            secret.encode(), f"{header_b64}.{claims_b64}".encode("ascii"), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, unb64(signature_b64)):
            raise ValueError("bad id_token signature")
    return json.loads(unb64(claims_b64))


# -- the server ----------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class OAuthTestServer:
    """An Authlib authorization server on 127.0.0.1:<free port>, in a daemon thread.

    Consent is automatic for the user given to login_as(); deny_next() makes the
    next authorization fail. Access tokens are checked by POST /introspect
    (what Dovecot's oauth2 passdb calls) and GET /userinfo.
    """

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self._lock = threading.RLock()
        self._clients: dict[str, Client] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._tokens: list[Token] = []
        self._by_access: dict[str, Token] = {}
        self._by_refresh: dict[str, Token] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.user_email = DEFAULT_USER
        self.reset()
        self.app = self._make_app()

    # -- knobs and records -------------------------------------------------

    def reset(self) -> None:
        """Back to the defaults: knobs, counters and records (tokens and clients stay)."""
        with self._lock:
            self.expires_in = DEFAULT_EXPIRES_IN
            self.rotate_refresh_tokens = True
            self.require_pkce = True
            self._deny: tuple[str, str | None] | None = None
            self._fail_token: tuple[str, int, str | None] | None = None
            self.last_authorize_params: dict[str, str] | None = None
            self.authorize_requests: list[dict[str, str]] = []
            self.last_token_params: dict[str, str] | None = None
            self.token_requests: list[str] = []
            self.token_auth_methods: list[str | None] = []
            self.token_errors: list[tuple[str, str]] = []
            self.refresh_count = 0
            self.revocations: list[str] = []
            self.introspections: list[tuple[str, bool]] = []

    def login_as(self, email: str) -> None:
        """The user who consents at /authorize from now on."""
        with self._lock:
            self.user_email = email

    def deny_next(self, error: str = "access_denied", description: str | None = None) -> None:
        """The next /authorize redirects back with ?error=…&state=… instead of a code."""
        with self._lock:
            self._deny = (error, description)

    def fail_next_token_request(
        self,
        error: str = "temporarily_unavailable",
        status: int = 503,
        description: str | None = None,
    ) -> None:
        """The next POST /token answers {"error": error} with `status`, changing nothing."""
        with self._lock:
            self._fail_token = (error, status, description)

    def register_client(
        self,
        client_id: str | None = None,
        client_secret: str | None = "",
        redirect_uris: list[str] | str = ("http://127.0.0.1:5000/oauth/callback",),
        scope: str | None = "mail",
    ) -> Client:
        """Register (or replace) a client. client_secret "" makes one up; None: public client."""
        client_id = client_id or f"client-{secrets.token_hex(6)}"
        if client_secret == "":
            client_secret = secrets.token_urlsafe(24)
        uris = [redirect_uris] if isinstance(redirect_uris, str) else list(redirect_uris)
        client = Client(client_id, client_secret, uris, scope)
        with self._lock:
            self._clients[client_id] = client
        return client

    def revoke_refresh_tokens(self, email: str | None = None) -> None:
        """Consent withdrawn: every refresh token (of `email`, or of all) gives invalid_grant.

        Access tokens already issued stay valid until they expire, as at real providers.
        """
        with self._lock:
            for token in self._tokens:
                if email is None or token.user.email == email:
                    token.refresh_token_revoked = True

    def revoke_all_for(self, email: str) -> None:
        """Revoke every access and refresh token of `email`."""
        with self._lock:
            for token in self._tokens:
                if token.user.email == email:
                    token.refresh_token_revoked = True
                    token.access_token_revoked = True

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Make the current access tokens (of `email`, or all) expired: introspection says inactive."""
        now = time.time()
        with self._lock:
            for token in self._tokens:
                if email is None or token.user.email == email:
                    token.expires_at = min(token.expires_at, now - 1)

    def introspect(self, token_string: str) -> dict:
        """What POST /introspect would answer for an access token."""
        with self._lock:
            token = self._by_access.get(token_string)
            if token is None or not token.access_active:
                return {"active": False}
            return {
                "active": True,
                "username": token.user.email,
                "scope": token.scope,
                "client_id": token.client.client_id,
                "exp": int(token.expires_at),
            }

    def tokens_for(self, email: str) -> list[Token]:
        """Every token record issued to `email`, oldest first."""
        with self._lock:
            return [t for t in self._tokens if t.user.email == email]

    # -- URLs ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("OAuthTestServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def authorize_url(self) -> str:
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def revoke_url(self) -> str:
        return self.base_url + "/revoke"

    @property
    def introspect_url(self) -> str:
        return self.base_url + "/introspect"

    @property
    def userinfo_url(self) -> str:
        return self.base_url + "/userinfo"

    # -- lifecycle -------------------------------------------------------

    def start(self) -> OAuthTestServer:
        self._server = make_server(
            self.host, 0, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oauth-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OAuthTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------

    def _query_client(self, client_id: str) -> Client | None:
        with self._lock:
            return self._clients.get(client_id)

    def _save_token(self, token: dict, req: Any) -> None:
        """Store the token; add id_token to the response dict Authlib returns."""
        now = time.time()
        client: Client = req.client
        user: User = req.user
        previous: Token | None = getattr(req, "refresh_token", None)
        code: AuthorizationCode | None = getattr(req, "authorization_code", None)
        grant_id = previous.grant_id if previous else secrets.token_hex(8)
        nonce = code.nonce if code else (previous.nonce if previous else None)
        record = Token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client=client,
            user=user,
            scope=token.get("scope", ""),
            issued_at=now,
            expires_in=int(token.get("expires_in", 0)),
            grant_id=grant_id,
            nonce=nonce,
        )
        claims = {
            "iss": self.base_url,
            "sub": user.email,
            "aud": client.client_id,
            "iat": int(now),
            "exp": int(now) + max(int(token.get("expires_in", 0)), 60),
            "email": user.email,
            "email_verified": True,
            "preferred_username": user.email,
        }
        if nonce:
            claims["nonce"] = nonce
        token["id_token"] = make_jwt(claims, client.client_secret)
        with self._lock:
            self._tokens.append(record)
            self._by_access[record.access_token] = record
            if record.refresh_token:
                self._by_refresh[record.refresh_token] = record

    def _expires_in(self, client: Client, grant_type: str) -> int:
        return self.expires_in

    def _make_app(self) -> Flask:
        app = Flask("oauth_test_server")
        authz = AuthorizationServer(
            app, query_client=self._query_client, save_token=self._save_token
        )
        authz.owner = self  # type: ignore[attr-defined]
        authz.register_token_generator(
            "default",
            BearerTokenGenerator(
                lambda **kw: generate_token(42),
                lambda **kw: generate_token(48),
                self._expires_in,
            ),
        )
        authz.register_grant(_AuthorizationCodeGrant, [CodeChallenge(required=True)])
        authz.register_grant(_RefreshTokenGrant)
        authz.register_endpoint(_RevocationEndpoint)
        authz.register_endpoint(_IntrospectionEndpoint)
        self.authorization = authz

        @app.get("/authorize")
        def authorize() -> Response:
            params = request.args.to_dict(flat=True)
            with self._lock:
                self.last_authorize_params = params
                self.authorize_requests.append(params)
                deny, self._deny = self._deny, None
                email = self.user_email
            try:
                grant = authz.get_consent_grant(end_user=None)
            except OAuth2Error as error:
                # Unknown client or redirect URI: an error page, no redirect.
                return authz.handle_error_response(None, error)
            problem: tuple[str, str | None] | None = deny
            if problem is None and self.require_pkce:
                if not params.get("code_challenge"):
                    problem = ("invalid_request", "code_challenge required")
                elif params.get("code_challenge_method") != "S256":
                    problem = ("invalid_request", "code_challenge_method must be S256")
            if problem is not None:
                error, description = problem
                back = [("error", error)]
                if description:
                    back.append(("error_description", description))
                if params.get("state"):
                    back.append(("state", params["state"]))
                location = add_params_to_uri(grant.redirect_uri, back)
                return Response("", status=302, headers={"Location": location})
            return authz.create_authorization_response(grant=grant, grant_user=User(email))

        @app.post("/token")
        def token() -> Response:
            grant_type = request.form.get("grant_type", "")
            with self._lock:
                # One token request at a time: check-and-rotate of a refresh token is atomic.
                self.token_requests.append(grant_type)
                self.last_token_params = request.form.to_dict(flat=True)
                self.token_auth_methods.append(
                    "client_secret_basic"
                    if request.authorization
                    else "client_secret_post"
                    if request.form.get("client_secret")
                    else None
                )
                fail, self._fail_token = self._fail_token, None
                if fail is not None:
                    error, status, description = fail
                    body = {"error": error}
                    if description:
                        body["error_description"] = description
                    self.token_errors.append((grant_type, error))
                    return Response(
                        json.dumps(body), status=status, headers=dict(default_json_headers)
                    )
                response = authz.create_token_response()
                if response.status_code == 200:
                    if grant_type == "refresh_token":
                        self.refresh_count += 1
                else:
                    payload = response.get_json(silent=True) or {}
                    self.token_errors.append((grant_type, payload.get("error", "")))
                return response

        @app.post("/revoke")
        def revoke() -> Response:
            return authz.create_endpoint_response(RevocationEndpoint.ENDPOINT_NAME)

        @app.post("/introspect")
        def introspect() -> Response:
            return authz.create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo() -> Response:
            header = request.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            with self._lock:
                token = self._by_access.get(value.strip()) if scheme.lower() == "bearer" else None
                active = token is not None and token.access_active
            if not active:
                response = jsonify({"error": "invalid_token"})
                response.status_code = 401
                response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
                return response
            email = token.user.email
            return jsonify(
                {
                    "sub": email,
                    "email": email,
                    "email_verified": True,
                    "mail": email,
                    "userPrincipalName": email,
                }
            )

        @app.get("/.well-known/openid-configuration")
        def metadata() -> Response:
            base = self.base_url
            return jsonify(
                {
                    "issuer": base,
                    "authorization_endpoint": base + "/authorize",
                    "token_endpoint": base + "/token",
                    "revocation_endpoint": base + "/revoke",
                    "introspection_endpoint": base + "/introspect",
                    "userinfo_endpoint": base + "/userinfo",
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["authorization_code", "refresh_token"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
                    "id_token_signing_alg_values_supported": ["HS256"],
                }
            )

        return app
