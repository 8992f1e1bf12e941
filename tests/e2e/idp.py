"""The test OpenID provider (servers/oidc/server.mjs, npm `oidc-provider`) for the API-token
end-to-end tests: start it, get tokens by client_credentials, introspect, revoke, rotate keys;
and for the session tests (Barbican as OpenID relying party): end users alice/bob, clients
barbican-code / barbican-code-post / barbican-implicit, authorization URLs, code exchange,
end-session URLs. Drive logins with browser.Browser (tests/e2e/browser.py).

Install its node modules first (the Makefile does it):
    npm ci --prefix tests/e2e/servers/oidc --no-audit --no-fund
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import uuid
from typing import Any, Iterable, Mapping, Sequence

import harness as H

OIDC_DIR = H.SERVERS / "oidc"
INSTALL_HINT = "npm ci --prefix tests/e2e/servers/oidc --no-audit --no-fund"

RES_ES = "urn:barbican:api-es"
RES_RS = "urn:barbican:api-rs"
RES_ED = "urn:barbican:api-ed"
RES_OTHER = "urn:barbican:other"       # a JWT audience Barbican's test config does not accept
RES_OPAQUE = "urn:barbican:opaque"
JWT_RESOURCES = {RES_ES: "ES256", RES_RS: "RS256", RES_ED: "EdDSA"}

# client id -> (token endpoint auth method, groups claim); secret is "<id>-secret"
CLIENTS: dict[str, tuple[str, list[str] | None]] = {
    "api-admin": ("basic", ["admins", "users"]),
    "api-reader": ("post", ["users"]),
    "api-nogroups": ("basic", None),
    "barbican-introspector": ("basic", None),
    "barbican-introspector-post": ("post", None),
}
INTROSPECTOR = "barbican-introspector"

# --- end users and relying-party clients (Barbican's native OIDC sessions) ---------------
# username -> (password, the claims the IdP releases for scopes openid profile email groups)
USERS: dict[str, tuple[str, dict[str, Any]]] = {
    "alice": ("alice-password", {
        "sub": "alice", "preferred_username": "alice", "name": "Alice Liddell",
        "email": "alice@example.test", "email_verified": True, "groups": ["admins", "users"]}),
    "bob": ("bob-password", {
        "sub": "bob", "preferred_username": "bob", "name": "Bob",
        "email": "bob@example.test", "email_verified": True, "groups": ["users"]}),
}
# client id -> (token endpoint auth "basic" | "post" | "none", secret, id_token alg)
RP_CLIENTS: dict[str, tuple[str, str | None, str]] = {
    "barbican-code": ("basic", "barbican-code-secret", "ES256"),
    "barbican-code-post": ("post", "barbican-code-post-secret", "RS256"),
    "barbican-implicit": ("none", None, "ES256"),
}
CALLBACK = "http://app.test/.barbican/callback"
CALLBACK_8080 = "http://app.test:8080/.barbican/callback"
POST_LOGOUT_URIS = ("http://app.test/", "http://app.test/bye")
RP_SCOPE = "openid profile email groups"


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = b64url(os.urandom(32))
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def secret(client: str) -> str:
    return f"{client}-secret"


def basic(client: str, password: str | None = None) -> str:
    q = urllib.parse.quote
    raw = f"{q(client, safe='')}:{q(password if password is not None else secret(client), safe='')}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def jwt_header(token: str) -> dict:
    return b64url_json(token.split(".")[0])


def jwt_payload(token: str) -> dict:
    return b64url_json(token.split(".")[1])


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class HttpResult:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HttpResult({self.status}, {self.body[:300]!r})"


class IdpProc(H.ServerProc):
    """servers/oidc/server.mjs; issuer == self.base == http://127.0.0.1:<port>."""

    _discovery: dict | None = None

    # --- plain HTTP ---------------------------------------------------------------------
    def http(self, method: str, path: str, *, form: Mapping[str, str] | None = None,
             body: bytes | None = None, headers: Mapping[str, str] | None = None,
             timeout: float = 10.0) -> HttpResult:
        hdrs = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body if body is not None else
                         (b"" if method == "POST" else None), headers=hdrs)
            r = conn.getresponse()
            return HttpResult(r.status, list(r.getheaders()), r.read())
        finally:
            conn.close()

    def _ok(self, r: HttpResult, what: str) -> Any:
        if r.status != 200:
            raise RuntimeError(f"idp {what}: {r.status} {r.body[:300]!r}")
        return r.json()

    # --- OAuth --------------------------------------------------------------------------
    def discovery(self, fresh: bool = False) -> dict:
        if self._discovery is None or fresh:
            self._discovery = self._ok(self.http("GET", "/.well-known/openid-configuration"),
                                       "discovery")
        return self._discovery

    def endpoint_path(self, name: str) -> str:
        """Path of a discovery endpoint (e.g. "introspection_endpoint"), checked to be ours."""
        url = self.discovery()[name]
        parts = urllib.parse.urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.base:
            raise AssertionError(f"{name} {url} is not on the issuer {self.base}")
        return parts.path

    def jwks(self) -> dict:
        return self._ok(self.http("GET", self.endpoint_path("jwks_uri")), "jwks")

    def token_response(self, resource: str | None = RES_ES, scope: str | None = "read",
                       client: str = "api-admin", *, auth: str | None = None,
                       client_secret: str | None = None, ttl: int | None = None) -> HttpResult:
        """POST the token endpoint (client_credentials). `auth` overrides the client's
        registered method ("basic" | "post")."""
        auth = auth or CLIENTS[client][0]
        form = {"grant_type": "client_credentials"}
        if resource:
            form["resource"] = resource
        if scope:
            form["scope"] = scope
        headers = {}
        if auth == "basic":
            headers["Authorization"] = basic(client, client_secret)
        else:
            form["client_id"] = client
            form["client_secret"] = client_secret if client_secret is not None else secret(client)
        if ttl is not None:
            headers["X-Test-TTL"] = str(ttl)
        return self.http("POST", self.endpoint_path("token_endpoint"), form=form, headers=headers)

    def token(self, resource: str | None = RES_ES, scope: str | None = "read",
              client: str = "api-admin", **kw: Any) -> str:
        r = self.token_response(resource, scope, client, **kw)
        return self._ok(r, f"token {resource} {scope} {client}")["access_token"]

    def introspect_response(self, token: str, client: str = INTROSPECTOR,
                            auth: str | None = None) -> HttpResult:
        auth = auth or CLIENTS[client][0]
        form = {"token": token}
        headers = {}
        if auth == "basic":
            headers["Authorization"] = basic(client)
        else:
            form.update(client_id=client, client_secret=secret(client))
        return self.http("POST", self.endpoint_path("introspection_endpoint"), form=form,
                         headers=headers)

    def introspect(self, token: str, client: str = INTROSPECTOR) -> dict:
        return self._ok(self.introspect_response(token, client), "introspection")

    def revoke(self, token: str, client: str = "api-admin") -> None:
        """RFC 7009 revocation, authenticated as the client the token was issued to."""
        auth = CLIENTS[client][0]
        form = {"token": token}
        headers = {}
        if auth == "basic":
            headers["Authorization"] = basic(client)
        else:
            form.update(client_id=client, client_secret=secret(client))
        r = self.http("POST", self.endpoint_path("revocation_endpoint"), form=form,
                      headers=headers)
        if r.status != 200:
            raise RuntimeError(f"idp revocation: {r.status} {r.body[:300]!r}")

    # --- relying party (authorization code / implicit) ----------------------------------
    def authorize_url(self, client: str = "barbican-code", *, redirect_uri: str = CALLBACK,
                      scope: str = RP_SCOPE, state: str | None = None,
                      nonce: str | None = None, code_challenge: str | None = None,
                      response_type: str | None = None, response_mode: str | None = None,
                      **extra: str) -> str:
        """An authorization request URL. response_type defaults to the client's ("code" or
        "id_token"; the implicit client gets response_mode=form_post by default)."""
        implicit = RP_CLIENTS[client][0] == "none" if client in RP_CLIENTS else False
        q = {"client_id": client,
             "response_type": response_type or ("id_token" if implicit else "code"),
             "redirect_uri": redirect_uri, "scope": scope}
        if response_mode or implicit:
            q["response_mode"] = response_mode or "form_post"
        for k, v in (("state", state), ("nonce", nonce), ("code_challenge", code_challenge)):
            if v is not None:
                q[k] = v
        if code_challenge is not None:
            q["code_challenge_method"] = "S256"
        q.update(extra)
        return self.discovery()["authorization_endpoint"] + "?" + urllib.parse.urlencode(q)

    def exchange_code(self, code: str, client: str = "barbican-code", *,
                      redirect_uri: str = CALLBACK, code_verifier: str | None = None,
                      auth: str | None = None, client_secret: str | None = None) -> HttpResult:
        """POST grant_type=authorization_code with the client's auth (basic | post)."""
        auth = auth or RP_CLIENTS[client][0]
        pw = client_secret if client_secret is not None else RP_CLIENTS[client][1]
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        headers = {}
        if auth == "basic":
            headers["Authorization"] = basic(client, pw)
        else:
            form["client_id"] = client
            if auth == "post":
                form["client_secret"] = pw or ""
        return self.http("POST", self.endpoint_path("token_endpoint"), form=form,
                         headers=headers)

    def end_session_url(self, *, client_id: str | None = None,
                        post_logout_redirect_uri: str | None = None,
                        id_token_hint: str | None = None, state: str | None = None) -> str:
        q = {k: v for k, v in (("client_id", client_id), ("id_token_hint", id_token_hint),
                               ("post_logout_redirect_uri", post_logout_redirect_uri),
                               ("state", state)) if v is not None}
        url = self.discovery()["end_session_endpoint"]
        return url + ("?" + urllib.parse.urlencode(q) if q else "")

    # --- test control -------------------------------------------------------------------
    def stats(self) -> dict:
        return self._call("GET", "/__test/stats")

    def count(self, what: str) -> int:
        """Requests seen so far: "jwks", "introspection", "token", "discovery",
        "authorization" (GET/POST /auth), "login" (successful logins), "login_failed",
        "token_code" (token requests with grant_type=authorization_code), "end_session"
        (GET/POST /session/end), "other", "test"."""
        return self.stats()[what]

    def reset(self) -> None:
        self._call("POST", "/__test/reset")

    def rotate(self) -> dict:
        return self._call("POST", "/__test/rotate")

    def retire(self) -> dict:
        return self._call("POST", "/__test/retire")

    def keys(self) -> dict:
        return self.stats()["keys"]

    def set_groups(self, client: str, groups: Iterable[str] | None) -> None:
        q = {"client": client}
        if groups is None:
            q["none"] = "1"
        else:
            q["groups"] = "|".join(groups)
        self._call("POST", "/__test/groups?" + urllib.parse.urlencode(q))

    def set_mode(self, jwks: str | None = None, introspection: str | None = None) -> dict:
        q = {k: v for k, v in (("jwks", jwks), ("introspection", introspection)) if v}
        return self._call("POST", "/__test/mode?" + urllib.parse.urlencode(q))

    def sign(self, payload: Mapping[str, Any], *, alg: str = "ES256", signer: str = "current",
             header: Mapping[str, Any] | None = None) -> str:
        """A compact JWS from the IdP's keys: signer "current" | "g<i>" (a generation) |
        "foreign" (never published) | "rsa-public-pem" (HS256 keyed with the RSA public key).
        `header` fields override (None removes one, e.g. {"kid": None})."""
        body = json.dumps({"alg": alg, "signer": signer, "header": dict(header or {}),
                           "payload": dict(payload)}).encode()
        r = self.http("POST", "/__test/sign", body=body,
                      headers={"Content-Type": "application/json"})
        return self._ok(r, "sign")["token"]

    def claims(self, resource: str = RES_ES, scope: str | None = "read",
               client: str = "api-admin", *, ttl: int = 600, now: int | None = None,
               **override: Any) -> dict:
        """Claims shaped like the IdP's own RFC 9068 access tokens (for `sign`).
        An override of None drops the claim."""
        now = int(time.time()) if now is None else now
        groups = CLIENTS.get(client, ("basic", None))[1]
        c: dict[str, Any] = {"username": client, "jti": uuid.uuid4().hex, "sub": client,
                             "iat": now, "exp": now + ttl, "scope": scope,
                             "client_id": client, "iss": self.base, "aud": resource}
        if groups is not None:
            c["groups"] = list(groups)
        c.update(override)
        return {k: v for k, v in c.items() if v is not None}


def node_binary() -> str:
    node = shutil.which("node")
    if not node:
        raise RuntimeError("node is not installed (the test IdP needs node >= 20)")
    return node


def require_node_modules() -> None:
    if not (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        raise RuntimeError(f"the test IdP's node modules are missing: run `{INSTALL_HINT}` "
                           "(the Makefile's e2e target does)")


def start_idp(*, generations: int = 3, quiet: bool = True,
              extra_args: Sequence[str] = (), redirect_uris: Sequence[str] = (),
              post_logout_redirect_uris: Sequence[str] = ()) -> IdpProc:
    """Start the test IdP; `redirect_uris` / `post_logout_redirect_uris` are registered for
    every relying-party client in addition to the built-in ones."""
    require_node_modules()
    cmd = [node_binary(), str(OIDC_DIR / "server.mjs"), "--port", "0",
           "--generations", str(generations), *extra_args]
    for u in redirect_uris:
        cmd += ["--redirect-uri", u]
    for u in post_logout_redirect_uris:
        cmd += ["--post-logout-redirect-uri", u]
    if quiet:
        cmd.append("--quiet")
    proc = IdpProc("idp", cmd, cwd=OIDC_DIR)
    proc.start_and_wait(timeout=20.0)
    return proc  # type: ignore[return-value]


def verify_jwts(tokens: Sequence[str], jwks: Mapping[str, Any]) -> list[dict]:
    """Verify with node:crypto alone (servers/oidc/verify.mjs), independent of the IdP."""
    p = subprocess.run([node_binary(), str(OIDC_DIR / "verify.mjs")],
                       input=json.dumps({"jwks": jwks, "tokens": list(tokens)}).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"verify.mjs failed: {p.stderr.decode()[:500]}")
    return json.loads(p.stdout)


def browser_login(browser: Any, url: str, user: str = "alice") -> Any:
    """Drive a scripted browser (browser.Browser) from `url` through the provider's login as
    `user`, back to `url`; asserts it ends on a 200."""
    r = browser.login(url, user, USERS[user][0])
    assert r.status == 200, f"{r!r}\nhops: {r.hops}"
    return r


def app_login(browser: Any, path: str = "/app/page?x=1", user: str = "alice") -> Any:
    """browser_login from http://app.test + `path`."""
    return browser_login(browser, "http://app.test" + path, user)
