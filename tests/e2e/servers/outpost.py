#!/usr/bin/env python3
"""TEST stand-in for an authentik proxy outpost (forward-auth side). Not for production.

It follows DESIGN.md §3 ("Authentik proxy outpost") and the behaviour of authentik's Go
outpost, read from goauthentik/authentik `internal/outpost/proxyv2/`:

- `application/mode_forward.go`   forwardHandleEnvoy / Traefik / Caddy / Nginx: how the
  original URL is recovered, allow (200 + identity headers + echoed User-Agent),
  skip_path_regex (200, no identity headers), otherwise handleAuthStart (302) or 401 (nginx).
- `application/mode_common.go`    addHeaders (X-authentik-*, groups joined with "|"),
  getTraefikForwardUrl, getNginxForwardUrl, IsAllowlisted (path in forward_single, the full
  URL string in forward_domain; Go's MatchString is an unanchored search).
- `application/oauth.go`          handleAuthStart: 302 to the provider's authorize URL
  (oauth2 AuthCodeURL: client_id, redirect_uri, response_type=code, scope, state).
- `application/oauth_state.go`    createState: a session is created (Set-Cookie) when the
  client has none or a stale one; the state is an HS256 JWT {iss, sid, state, redirect}
  signed with the cookie secret; checkRedirectParam for `start?rd=`.
- `application/oauth_callback.go` + `utils.go` redirect(): the callback checks the state JWT
  against the session id, stores the claims in the session (Max-Age = exp - now) and
  redirects to the saved URL (fallback: external host).
- `application/application.go`    cookie name `authentik_proxy_<sha256(client_id)[:8]>`,
  the query signatures `X-authentik-auth-callback=true` / `X-authentik-logout=true` handled on
  any path, `start`, `callback`, `sign_out` (deletes every server-side session of the user,
  302 to the end-session endpoint with id_token_hint; the cookie itself is *not* cleared).
- `application/auth.go`, `auth_bearer.go`, `auth_basic.go`  checkAuth: session claims, then
  a 60 s cache keyed by the Authorization value, then Bearer (introspection) / Basic
  (`goauthentik.io/token` + token); a header-authenticated answer saves a session and so
  carries Set-Cookie.
- `session.go`                    cookie attributes (Path=/, HttpOnly, SameSite=Lax, Max-Age =
  access token validity + 1, Domain = cookie domain), server-side session store.
- `proxyv2.go`                    gorilla mux root router: `/outpost.goauthentik.io/ping` → 204,
  non-clean paths answered with a 301 to the cleaned path.

Test-only additions (not authentik): `/application/o/authorize/` auto-approves a configured
user and redirects to the callback (no browser needed); `/__test/*` control endpoints
(sessions, stats, failure modes). Cookie and token values are never logged.

Failure modes (`POST /__test/mode?m=...`, on the outpost and provider paths): `500`, `503`,
`hang`, `close` (connection reset), `delay` (`s` seconds, then the normal answer), `garbage`
(bytes that are not HTTP, then a reset), `noident` (200 without identity headers),
`redirect_other` (302 to another host), `badtext` (200 whose identity values are not UTF-8).
With `--decision-log N`, the last N forward-auth answers are kept as [time, mode, decision,
the `id` query parameter of the request] and served by `GET /__test/decisions` (bench/soak.py
joins them with what its clients saw).

CLI: python3 outpost.py --port N   (N=0 picks a free port; prints "LISTENING <port>")
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import posixpath
import re
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from collections import deque
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/outpost.goauthentik.io"
ENVOY_PREFIX = PREFIX + "/auth/envoy"
CALLBACK_SIGNATURE = "X-authentik-auth-callback"
LOGOUT_SIGNATURE = "X-authentik-logout"
JWT_BASIC_USERNAME = "goauthentik.io/token"
SENSITIVE_HEADERS = {"cookie", "authorization", "set-cookie", "proxy-authorization"}


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------

def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(text + pad)


def jwt_hs256(payload: dict, key: bytes) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    signing = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64u(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(sig)


def jwt_hs256_verify(token: str, key: bytes) -> dict | None:
    try:
        h, p, s = token.split(".")
        header = json.loads(b64u_decode(h))
        if header.get("alg") != "HS256":
            return None
        expect = hmac.new(key, (h + "." + p).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expect, b64u_decode(s)):
            return None
        return json.loads(b64u_decode(p))
    except Exception:
        return None


def fingerprint(value: str) -> str:
    """What the stats show instead of a secret: enough to compare, nothing to replay."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def redact_header(name: str, value: str) -> str:
    lname = name.lower()
    if lname == "cookie":
        parts = []
        for item in value.split(";"):
            item = item.strip()
            if not item:
                continue
            k, _, v = item.partition("=")
            parts.append(f"{k}={fingerprint(v)}")
        return "; ".join(parts)
    if lname in ("authorization", "proxy-authorization"):
        scheme, _, rest = value.partition(" ")
        return f"{scheme} {fingerprint(rest)}" if rest else fingerprint(value)
    if lname == "set-cookie":
        k, _, rest = value.partition("=")
        v, _, attrs = rest.partition(";")
        return f"{k}={fingerprint(v)};{attrs}"
    return value


def go_clean_path(p: str) -> str:
    """gorilla/mux cleanPath: path.Clean, keep a trailing slash."""
    if p == "":
        return "/"
    if p[0] != "/":
        p = "/" + p
    np = posixpath.normpath(p)
    if np.startswith("//"):
        np = "/" + np.lstrip("/")
    if p[-1] == "/" and np != "/":
        np += "/"
    return np


def host_matches(host: str, patterns: list[str]) -> bool:
    h = host.split(":")[0].lower()
    for pat in patterns:
        pat = pat.lower()
        if pat.startswith("*."):
            if h.endswith(pat[1:]):
                return True
        elif h == pat:
            return True
    return False


def http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


# ---------------------------------------------------------------------------------------
# state
# ---------------------------------------------------------------------------------------

class Outpost:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.client_id = args.client_id
        self.client_secret = args.client_secret.encode()
        self.cookie_secret = args.cookie_secret.encode()
        # application.go: sessionName := "authentik_proxy_" + hex(sha256(client_id))[:8]
        self.cookie_name = args.cookie_name or (
            "authentik_proxy_" + hashlib.sha256(self.client_id.encode()).hexdigest()[:8])
        self.skip_regexes = [re.compile(r) for r in args.skip_path_regex if r]
        self.sessions: dict[str, dict] = {}      # sid -> {"claims": dict|None, "expires": float}
        self.codes: dict[str, dict] = {}         # authorization code -> claims
        self.tokens: dict[str, dict] = {}        # bearer token -> claims (introspection table)
        self.auth_header_cache: dict[str, tuple[dict, float]] = {}
        self.counters: dict[str, int] = {}
        self.history: deque = deque(maxlen=args.history)
        self.decisions: deque = deque(maxlen=max(args.decision_log, 0))
        self.mode = "normal"
        self.mode_arg = 0.0
        self.release = threading.Event()
        self.port = 0

    # ---- urls --------------------------------------------------------------------------
    def authentik_url(self) -> str:
        return self.args.authentik_url or f"http://127.0.0.1:{self.port}"

    def external_host(self, request_host: str, scheme: str = "http") -> str:
        # forward_single: the provider's external host is the application's URL. The test
        # stand-in derives it from the request when none is configured.
        return self.args.external_host or f"{scheme}://{request_host}"

    def authorize_endpoint(self) -> str:
        return self.authentik_url() + "/application/o/authorize/"

    def end_session_endpoint(self) -> str:
        return self.authentik_url() + f"/application/o/{self.args.app_slug}/end-session/"

    def jwks_uri(self) -> str:
        return self.authentik_url() + f"/application/o/{self.args.app_slug}/jwks/"

    def issuer(self) -> str:
        return self.authentik_url() + f"/application/o/{self.args.app_slug}/"

    # ---- counters ----------------------------------------------------------------------
    def count(self, key: str) -> None:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    # ---- session cookie (gorilla securecookie shape: b64(date|value|mac)) --------------
    def encode_cookie(self, sid: str) -> str:
        ts = str(int(time.time()))
        mac = hmac.new(self.cookie_secret, f"{self.cookie_name}|{ts}|{sid}".encode(),
                       hashlib.sha256).digest()
        return b64u(f"{ts}|{sid}|".encode() + mac)

    def decode_cookie(self, value: str) -> str | None:
        try:
            raw = b64u_decode(value)
            ts, sid, mac = raw.split(b"|", 2)
            expect = hmac.new(self.cookie_secret,
                              f"{self.cookie_name}|{ts.decode()}|{sid.decode()}".encode(),
                              hashlib.sha256).digest()
            if not hmac.compare_digest(expect, mac):
                return None
            return sid.decode()
        except Exception:
            return None

    def cookie_header(self, value: str, max_age: int) -> str:
        parts = [f"{self.cookie_name}={value}", "Path=/"]
        if self.args.cookie_domain:
            parts.append(f"Domain={self.args.cookie_domain}")
        if max_age > 0:
            parts.append(f"Expires={http_date(time.time() + max_age)}")
            parts.append(f"Max-Age={max_age}")
        elif max_age < 0:
            parts.append("Expires=Thu, 01 Jan 1970 00:00:01 GMT")
            parts.append("Max-Age=0")
        parts.append("HttpOnly")
        if (self.args.external_host or "").lower().startswith("https:"):
            parts.append("Secure")
        parts.append("SameSite=Lax")
        return "; ".join(parts)

    def default_max_age(self) -> int:
        # session.go: maxAge = access_token_validity + 1
        return int(self.args.access_token_validity) + 1

    def new_session(self, claims: dict | None = None, ttl: float | None = None) -> str:
        sid = base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=")
        expires = time.time() + (ttl if ttl is not None else self.default_max_age())
        with self.lock:
            self.sessions[sid] = {"claims": claims, "expires": expires}
        return sid

    def lookup_session(self, cookie_value: str | None) -> tuple[str | None, dict | None, bool]:
        """(sid, session, error). error: a cookie was sent but names no live session."""
        if cookie_value is None:
            return None, None, False
        sid = self.decode_cookie(cookie_value)
        if sid is None:
            return None, None, True
        with self.lock:
            sess = self.sessions.get(sid)
            if sess is None or sess["expires"] <= time.time():
                self.sessions.pop(sid, None)
                return None, None, True
            return sid, sess, False

    # ---- identities ----------------------------------------------------------------------
    def make_claims(self, user: str, groups: list[str], ttl: float, email: str | None = None,
                    name: str | None = None, entitlements: list[str] | None = None) -> dict:
        now = int(time.time())
        exp = now + int(ttl)
        sub = hashlib.sha256(("user:" + user).encode()).hexdigest()
        claims = {
            "iss": self.issuer(),
            "sub": sub,
            "aud": self.client_id,
            "exp": exp,
            "iat": now,
            "auth_time": now,
            "email": email if email is not None else f"{user}@example.test",
            "email_verified": True,
            "name": name if name is not None else user.capitalize(),
            "given_name": name if name is not None else user.capitalize(),
            "preferred_username": user,
            "nickname": user,
            "groups": groups,
            "entitlements": entitlements or [],
            "sid": secrets.token_hex(16),
            "ak_proxy": {"user_attributes": {}, "is_superuser": False},
        }
        # oauth_callback.go: claims.RawToken = the access token (a JWT signed by the provider;
        # HS256 with the client secret when the provider has no signing key).
        claims["raw_token"] = jwt_hs256({k: v for k, v in claims.items()}, self.client_secret)
        return claims

    def identity_headers(self, claims: dict) -> list[tuple[str, str]]:
        # mode_common.go addHeaders
        h = [
            ("X-authentik-username", claims.get("preferred_username", "")),
            ("X-authentik-groups", "|".join(claims.get("groups") or [])),
            ("X-authentik-entitlements", "|".join(claims.get("entitlements") or [])),
            ("X-authentik-email", claims.get("email", "")),
            ("X-authentik-name", claims.get("name", "")),
            ("X-authentik-uid", claims.get("sub", "")),
            ("X-authentik-jwt", claims.get("raw_token", "")),
            ("X-authentik-meta-jwks", self.jwks_uri()),
            ("X-authentik-meta-outpost", self.args.outpost_name),
            ("X-authentik-meta-provider", self.args.provider_name),
            ("X-authentik-meta-app", self.args.app_slug),
            ("X-authentik-meta-version", self.args.version),
        ]
        if self.args.basic_auth_header:
            user = claims.get("email", "")
            pw = self.args.basic_auth_password
            h.append(("Authorization",
                      "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()))
        return h

    def logout_sub(self, sub: str) -> int:
        with self.lock:
            dead = [sid for sid, s in self.sessions.items()
                    if s["claims"] and s["claims"].get("sub") == sub]
            for sid in dead:
                del self.sessions[sid]
            for k in [k for k, (c, _) in self.auth_header_cache.items() if c.get("sub") == sub]:
                del self.auth_header_cache[k]
        return len(dead)


# ---------------------------------------------------------------------------------------
# request handler
# ---------------------------------------------------------------------------------------

class Reply:
    """A response under construction (headers may repeat, e.g. Set-Cookie)."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.decision = ""

    def set(self, name: str, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))

    def add(self, name: str, value: str) -> None:
        self.headers.append((name, value))

    def redirect(self, url: str, status: int, method: str) -> None:
        # net/http.Redirect
        self.status = status
        self.set("Location", url)
        if method in ("GET", "HEAD"):
            self.set("Content-Type", "text/html; charset=utf-8")
            text = {301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect"}[status]
            self.body = f'<a href="{url}">{text}</a>.\n\n'.encode()

    def error(self, text: str, status: int) -> None:
        # net/http.Error
        self.status = status
        self.set("Content-Type", "text/plain; charset=utf-8")
        self.set("X-Content-Type-Options", "nosniff")
        self.body = (text + "\n").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus the peer's
    # delayed ACK stall every response by ~40 ms.
    disable_nagle_algorithm = True
    server_version = "authentik-outpost-test"
    sys_version = ""
    op: Outpost  # set on the class by main()

    def version_string(self) -> str:
        return self.server_version

    # ---- plumbing ------------------------------------------------------------------------
    def log_message(self, fmt: str, *args) -> None:  # never log query strings or secrets
        pass

    def log_line(self, status: int) -> None:
        if self.op.args.quiet:
            return
        path = self.path.split("?", 1)[0]
        sys.stderr.write(f"outpost {self.command} {path} -> {status}\n")

    def read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send(self, r: Reply) -> None:
        self.send_response(r.status)
        for k, v in r.headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.body)))
        self.end_headers()
        if self.command != "HEAD" and r.body:
            self.wfile.write(r.body)
        self.log_line(r.status)

    def json_reply(self, obj, status: int = 200) -> None:
        r = Reply()
        r.status = status
        r.set("Content-Type", "application/json")
        r.body = json.dumps(obj, indent=1).encode()
        self.send(r)

    def cookie_value(self) -> str | None:
        # net/http Request.Cookie(name): the first cookie of that name
        for line in self.headers.get_all("Cookie") or []:
            for item in line.split(";"):
                k, sep, v = item.strip().partition("=")
                if sep and k == self.op.cookie_name:
                    return v.strip('"')
        return None

    def req_host(self) -> str:
        return self.headers.get("Host", "")

    def do_GET(self): self.dispatch()
    def do_POST(self): self.dispatch()
    def do_HEAD(self): self.dispatch()
    def do_PUT(self): self.dispatch()
    def do_DELETE(self): self.dispatch()
    def do_PATCH(self): self.dispatch()
    def do_OPTIONS(self): self.dispatch()

    # ---- dispatch ------------------------------------------------------------------------
    def dispatch(self) -> None:
        body = self.read_body()
        self.mode_at_start = self.op.mode  # the decision log's mode, even after a delay
        raw_path, _, raw_query = self.path.partition("?")
        if raw_path.startswith("/__test/"):
            return self.test_control(raw_path, urllib.parse.parse_qs(raw_query), body)

        op = self.op
        if op.mode != "normal" and raw_path.startswith((PREFIX, "/application/o/")):
            if self.failure_mode():
                return

        path = urllib.parse.unquote(raw_path)  # Go's r.URL.Path is the decoded path
        query = urllib.parse.parse_qs(raw_query, keep_blank_values=True)
        r = Reply()

        # proxyv2.go: /ping answers on every host
        if path == PREFIX + "/ping":
            op.count("ping")
            r.status = 204
            return self.send(r)

        if op.args.hosts and not host_matches(self.req_host(), op.args.hosts):
            op.count("unknown_host")
            r.status = 400  # handlers.go: "no app for hostname"
            return self.send(r)

        # gorilla mux: a non-clean path is answered with 301 to the cleaned one
        clean = go_clean_path(path)
        if clean != path:
            op.count("clean_redirect")
            loc = urllib.parse.quote(clean, safe="/:@!$&'()*+,;=-._~%") + \
                ("?" + raw_query if raw_query else "")
            r.redirect(loc, 301, self.command)
            if path.startswith(PREFIX + "/auth/"):
                r.decision = "clean_redirect"
                self.record("auth_clean_redirect", r, "")
            return self.send(r)

        if path.startswith("/application/o/"):
            return self.provider(path, query, r)

        # application.go middleware: query signatures are handled on any path
        if _qget(query, CALLBACK_SIGNATURE).lower() == "true":
            op.count("callback")
            self.handle_callback(query, r)
            return self.send(r)
        if _qget(query, LOGOUT_SIGNATURE).lower() == "true":
            op.count("sign_out")
            self.handle_sign_out(path, r)
            return self.send(r)

        if path == PREFIX + "/start":
            op.count("start")
            rd = self.check_redirect_param(_qget(query, "rd"))
            self.handle_auth_start(r, rd or "")
            return self.send(r)
        if path == PREFIX + "/callback":
            op.count("callback")
            self.handle_callback(query, r)
            return self.send(r)
        if path == PREFIX + "/sign_out":
            op.count("sign_out")
            self.handle_sign_out(path, r)
            return self.send(r)
        if path == PREFIX + "/auth/traefik":
            return self.forward("auth_traefik", r, self.traefik_url())
        if path == PREFIX + "/auth/caddy":
            return self.forward("auth_caddy", r, self.traefik_url())
        if path == PREFIX + "/auth/nginx":
            return self.forward_nginx(r)
        if path.startswith(ENVOY_PREFIX):
            return self.forward_envoy(path, raw_query, r)

        op.count("not_found")
        r.error("404 page not found", 404)
        return self.send(r)

    def log_decision(self, decision: str) -> None:
        """--decision-log: one compact entry per forward-auth answer (no secrets: the `id`
        is the client's request counter)."""
        op = self.op
        if op.decisions.maxlen:
            q = urllib.parse.parse_qs(self.path.partition("?")[2])
            with op.lock:
                op.decisions.append([time.time(), getattr(self, "mode_at_start", op.mode),
                                     decision, _qget(q, "id")])

    def failure_mode(self) -> bool:
        op = self.op
        mode = op.mode
        op.count("failed_" + mode)
        if mode in ("500", "503"):
            self.log_decision("error")
            r = Reply()
            r.error("Internal Server Error" if mode == "500" else "Service Unavailable",
                    int(mode))
            self.send(r)
            return True
        if mode == "garbage":
            self.log_decision("garbage")
            try:
                self.wfile.write(b"\x00\xffnot http at all\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass
            self.drop_connection()
            return True
        if mode in ("noident", "redirect_other", "badtext"):
            if not self.path.startswith(PREFIX + "/auth/"):
                return False
            r = Reply()
            if mode == "redirect_other":
                r.redirect("http://elsewhere.invalid/login?from=outpost", 302, self.command)
            elif mode == "badtext":
                r.set("X-authentik-username", "\xff\xfe-not-text")
                r.set("X-authentik-uid", "\xff")
            self.log_decision(mode)
            self.send(r)
            return True
        if mode in ("hang", "close"):
            self.log_decision(mode)
        if mode == "hang":
            op.release.wait(timeout=min(max(op.mode_arg or 30.0, 0.0), 120.0))
            self.drop_connection()
            return True
        if mode == "close":
            self.drop_connection()
            return True
        if mode == "delay":
            time.sleep(min(max(op.mode_arg, 0.0), 30.0))
            return False
        return False

    def drop_connection(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.log_line(0)

    # ---- recording -------------------------------------------------------------------------
    def record(self, endpoint: str, r: Reply, fwd: str) -> None:
        op = self.op
        headers: dict[str, list[str]] = {}
        for k, v in self.headers.items():
            headers.setdefault(k.lower(), []).append(redact_header(k, v))
        entry = {
            "endpoint": endpoint,
            "method": self.command,
            "path": self.path,
            "host": self.req_host(),
            "forward_url": fwd,
            "headers": headers,
            "cookie_names": sorted({
                item.strip().partition("=")[0]
                for line in (self.headers.get_all("Cookie") or [])
                for item in line.split(";") if item.strip()}),
            "status": r.status,
            "decision": r.decision,
            "set_cookie": any(k.lower() == "set-cookie" for k, _ in r.headers),
            "time": time.time(),
        }
        self.log_decision(r.decision)
        with op.lock:
            op.counters["auth_calls"] = op.counters.get("auth_calls", 0) + 1
            op.counters[endpoint] = op.counters.get(endpoint, 0) + 1
            op.history.append(entry)

    # ---- forward auth --------------------------------------------------------------------
    def traefik_url(self) -> str | None:
        # mode_common.go getTraefikForwardUrl: proto://host+uri, url.Parse must succeed
        proto = self.headers.get("X-Forwarded-Proto", "")
        host = self.headers.get("X-Forwarded-Host", "")
        uri = self.headers.get("X-Forwarded-Uri", "")
        if not proto:
            return None  # url.Parse("://...") fails: missing protocol scheme
        return f"{proto}://{host}{uri}"

    def forward(self, endpoint: str, r: Reply, fwd: str | None) -> None:
        """forwardHandleTraefik / forwardHandleCaddy."""
        if fwd is None:
            r.error("configuration error", 500)
            r.decision = "config_error"
            self.record(endpoint, r, "")
            return self.send(r)
        fq = urllib.parse.parse_qs(urllib.parse.urlsplit(fwd).query)
        if _qget(fq, CALLBACK_SIGNATURE).lower() == "true":
            self.handle_callback(fq, r)
            r.decision = "callback"
        elif _qget(fq, LOGOUT_SIGNATURE).lower() == "true":
            self.handle_sign_out(urllib.parse.urlsplit(fwd).path, r)
            r.decision = "sign_out"
        else:
            self.check_and_answer(r, fwd, redirect=True)
        self.record(endpoint, r, fwd)
        self.send(r)

    def forward_nginx(self, r: Reply) -> None:
        # mode_common.go getNginxForwardUrl: X-Original-URI (a path) then X-Original-URL
        fwd = self.headers.get("X-Original-URI") or self.headers.get("X-Original-URL")
        if not fwd:
            r.error("configuration error", 500)
            r.decision = "config_error"
            self.record("auth_nginx", r, "")
            return self.send(r)
        self.check_and_answer(r, fwd, redirect=False)
        self.record("auth_nginx", r, fwd)
        self.send(r)

    def forward_envoy(self, path: str, raw_query: str, r: Reply) -> None:
        # forwardHandleEnvoy: r.URL.Path = TrimPrefix(path, envoyPrefix); r.URL.Host = r.Host
        orig = path[len(ENVOY_PREFIX):]
        scheme = (self.headers.get("X-Forwarded-Proto") or "http").split(",")[0].strip()
        fwd = f"{scheme}://{self.req_host()}{urllib.parse.quote(orig, safe='/:@!$&()*+,;=-._~')}"
        if raw_query:
            fwd += "?" + raw_query
        self.check_and_answer(r, fwd, redirect=True, allow_path=orig)
        self.record("auth_envoy", r, fwd)
        self.send(r)

    def check_and_answer(self, r: Reply, fwd: str, redirect: bool,
                         allow_path: str | None = None) -> None:
        op = self.op
        claims = self.check_auth(r)
        if claims is not None:
            for k, v in op.identity_headers(claims):
                r.set(k, v)
            r.set("User-Agent", self.headers.get("User-Agent", ""))
            r.status = 200
            r.decision = "allow"
            return
        if self.is_allowlisted(fwd, allow_path):
            r.status = 200
            r.decision = "skip"
            return
        if redirect:
            self.handle_auth_start(r, fwd)
            r.decision = "redirect"
            return
        # forwardHandleNginx: save the redirect in the session, then 401
        self.ensure_session(r, redirect_url=fwd)
        if urllib.parse.urlsplit(fwd).path.startswith(PREFIX) and fwd != self.path:
            r.status = 200
            r.decision = "outpost_path"
            return
        r.error("unauthorized request", 401)
        r.decision = "unauthorized"

    def is_allowlisted(self, fwd: str, path: str | None) -> bool:
        # mode_common.go IsAllowlisted
        if path is None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(fwd).path)
        if self.op.args.mode == "forward_domain":
            subject = fwd
        else:
            subject = path
        return any(rx.search(subject) for rx in self.op.skip_regexes)

    def check_auth(self, r: Reply) -> dict | None:
        """auth.go checkAuth."""
        op = self.op
        sid, sess, _err = op.lookup_session(self.cookie_value())
        if sess and sess["claims"]:
            return sess["claims"]
        authz = self.headers.get("Authorization", "")
        now = time.time()
        with op.lock:
            cached = op.auth_header_cache.get(authz)
        if cached and cached[1] > now:
            return cached[0]
        token = None
        if authz[:7].lower() == "bearer ":
            token = authz[7:]
        elif authz[:6].lower() == "basic ":
            try:
                user, _, pw = base64.b64decode(authz[6:]).decode().partition(":")
            except Exception:
                user, pw = "", ""
            if user == JWT_BASIC_USERNAME:
                token = pw
        if token:
            with op.lock:
                claims = op.tokens.get(token)
            if claims and claims["exp"] > now:
                # saveAndCacheClaims: store in the (new) session -> Set-Cookie; cache 60 s
                new_sid = op.new_session(claims)
                r.add("Set-Cookie", op.cookie_header(op.encode_cookie(new_sid),
                                                     op.default_max_age()))
                with op.lock:
                    if authz not in op.auth_header_cache:
                        op.auth_header_cache[authz] = (claims, now + 60)
                return claims
        return None

    def ensure_session(self, r: Reply, redirect_url: str | None = None) -> str:
        """oauth_state.go createState: stale/absent session -> new id, saved (Set-Cookie)."""
        op = self.op
        sid, sess, err = op.lookup_session(self.cookie_value())
        if sid is None:
            sid = op.new_session()
            r.add("Set-Cookie", op.cookie_header(op.encode_cookie(sid), op.default_max_age()))
        if redirect_url is not None:
            with op.lock:
                s = op.sessions.get(sid)
                if s is not None:
                    s.setdefault("redirect", redirect_url)
        return sid

    def handle_auth_start(self, r: Reply, fwd: str) -> None:
        """oauth.go handleAuthStart + oauth_state.go createState."""
        op = self.op
        sid = self.ensure_session(r)
        state = jwt_hs256({
            "iss": f"goauthentik.io/outpost/{op.client_id}",
            "sid": sid,
            "state": b64u(secrets.token_bytes(32)),
            "redirect": fwd,
        }, op.cookie_secret)
        ext = op.external_host(self.forward_host())
        redirect_uri = ext.rstrip("/") + PREFIX + "/callback?" + \
            urllib.parse.urlencode({CALLBACK_SIGNATURE: "true"})
        params = {
            "client_id": op.client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": op.args.scopes,
            "state": state,
        }
        url = op.authorize_endpoint() + "?" + urllib.parse.urlencode(sorted(params.items()))
        r.redirect(url, 302, self.command)

    def forward_host(self) -> str:
        return self.headers.get("X-Forwarded-Host") or self.req_host()

    def check_redirect_param(self, rd: str) -> str | None:
        """oauth_state.go checkRedirectParam."""
        if not rd:
            return None
        u = urllib.parse.urlsplit(rd)
        op = self.op
        if op.args.mode == "forward_domain":
            dom = op.args.cookie_domain or ""
            if not (u.hostname or "").endswith(dom):
                return None
            return rd
        ext = urllib.parse.urlsplit(op.external_host(self.req_host()))
        if not u.netloc:
            u = u._replace(scheme=ext.scheme, netloc=ext.netloc)
        if u.netloc != ext.netloc:
            return None
        return urllib.parse.urlunsplit(u)

    def state_from_request(self, query: dict, r: Reply) -> dict | None:
        op = self.op
        claims = jwt_hs256_verify(_qget(query, "state"), op.cookie_secret)
        if not claims or claims.get("iss") != f"goauthentik.io/outpost/{op.client_id}":
            return None
        sid, sess, err = op.lookup_session(self.cookie_value())
        if err:
            r.add("Set-Cookie", op.cookie_header("", -1))  # discardSession
            return None
        if sid is None or claims.get("sid") != sid:
            return None
        return claims

    def handle_callback(self, query: dict, r: Reply) -> None:
        """oauth_callback.go handleAuthCallback + utils.go redirect."""
        op = self.op
        fallback = op.external_host(self.req_host())
        state = self.state_from_request(query, r)
        if state is None:
            r.redirect(fallback, 302, self.command)
            r.decision = "callback_bad_state"
            return
        with op.lock:
            claims = op.codes.pop(_qget(query, "code"), None)
        if claims is None:
            r.redirect(state.get("redirect") or fallback, 302, self.command)
            r.decision = "callback_bad_code"
            return
        sid = state["sid"]
        max_age = max(int(claims["exp"] - time.time()), 1)
        with op.lock:
            op.sessions[sid] = {"claims": claims, "expires": claims["exp"]}
        r.add("Set-Cookie", op.cookie_header(op.encode_cookie(sid), max_age))
        r.redirect(state.get("redirect") or fallback, 302, self.command)
        r.decision = "callback_ok"

    def handle_sign_out(self, path: str, r: Reply) -> None:
        """application.go handleSignOut."""
        op = self.op
        sid, sess, err = op.lookup_session(self.cookie_value())
        if err or sess is None or not sess.get("claims"):
            # redirectToStart
            ext = op.external_host(self.req_host())
            redirect_url = ext.rstrip("/") + path
            self.ensure_session(r, redirect_url=redirect_url)
            url = ext.rstrip("/") + PREFIX + "/start?" + urllib.parse.urlencode({"rd": redirect_url})
            r.redirect(url, 302, self.command)
            r.decision = "sign_out_no_session"
            return
        claims = sess["claims"]
        op.logout_sub(claims["sub"])
        if op.args.signout_expire_cookie:
            r.add("Set-Cookie", op.cookie_header("", -1))
        url = op.end_session_endpoint() + "?" + urllib.parse.urlencode(
            {"id_token_hint": claims.get("raw_token", "")})
        r.redirect(url, 302, self.command)
        r.decision = "sign_out"

    # ---- the provider side (authentik core), test-only auto login ------------------------
    def provider(self, path: str, query: dict, r: Reply) -> None:
        op = self.op
        if path == "/application/o/authorize/":
            op.count("authorize")
            if _qget(query, "client_id") != op.client_id:
                r.error("invalid client_id", 400)
                return self.send(r)
            redirect_uri = _qget(query, "redirect_uri")
            ru = urllib.parse.urlsplit(redirect_uri)
            if ru.path != PREFIX + "/callback" or ru.scheme not in ("http", "https"):
                r.error("invalid redirect_uri", 400)
                return self.send(r)
            user = _qget(query, "test_user") or op.args.auto_login_user
            if not user:
                r.status = 200
                r.set("Content-Type", "text/html; charset=utf-8")
                r.body = b"<html><body>login required (no auto-login user)</body></html>"
                return self.send(r)
            groups = _split_groups(_qget(query, "test_groups") or op.args.auto_login_groups)
            claims = op.make_claims(user, groups, op.args.access_token_validity)
            code = secrets.token_urlsafe(24)
            with op.lock:
                op.codes[code] = claims
            sep = "&" if ru.query else "?"
            target = redirect_uri + sep + urllib.parse.urlencode(
                {"code": code, "state": _qget(query, "state")})
            r.redirect(target, 302, self.command)
            return self.send(r)
        if path == f"/application/o/{op.args.app_slug}/end-session/":
            op.count("end_session")
            r.set("Content-Type", "text/html; charset=utf-8")
            r.body = b"<html><body>signed out</body></html>"
            return self.send(r)
        if path == f"/application/o/{op.args.app_slug}/jwks/":
            op.count("jwks")
            r.set("Content-Type", "application/json")
            r.body = b'{"keys": []}'
            return self.send(r)
        op.count("not_found")
        r.error("404 page not found", 404)
        return self.send(r)

    # ---- test control ----------------------------------------------------------------------
    def test_control(self, path: str, q: dict, body: bytes) -> None:
        op = self.op
        if path == "/__test/stats":
            with op.lock:
                counters = dict(op.counters)
                out = {
                    "auth_calls": counters.get("auth_calls", 0),
                    "counters": counters,
                    "auth_requests": list(op.history),
                    "mode": op.mode,
                    "sessions": len(op.sessions),
                    "cookie_name": op.cookie_name,
                }
            return self.json_reply(out)
        if path == "/__test/decisions":
            with op.lock:
                out = list(op.decisions)
            return self.json_reply(out)
        if self.command != "POST":
            return self.json_reply({"error": "use POST"}, 405)
        if path == "/__test/session":
            user = _qget(q, "user") or "alice"
            groups = _split_groups(_qget(q, "groups") or "")
            ttl = float(_qget(q, "ttl") or op.args.access_token_validity)
            ent = _split_groups(_qget(q, "entitlements") or "")
            claims = op.make_claims(user, groups, ttl, email=_qget(q, "email") or None,
                                    name=_qget(q, "name") or None, entitlements=ent)
            sid = op.new_session(claims, ttl=ttl)
            token = secrets.token_urlsafe(32)
            with op.lock:
                op.tokens[token] = claims
            return self.json_reply({
                "cookie_name": op.cookie_name,
                "cookie_value": op.encode_cookie(sid),
                "bearer_token": token,
                "exp": claims["exp"],
                "sub": claims["sub"],
                "jwt": claims["raw_token"],
            })
        if path == "/__test/reset":
            with op.lock:
                op.counters.clear()
                op.history.clear()
                op.auth_header_cache.clear()
                if _qget(q, "sessions") in ("1", "true"):
                    op.sessions.clear()
                    op.tokens.clear()
                    op.codes.clear()
            op.mode = "normal"
            op.release.set()
            return self.json_reply({"ok": True})
        if path == "/__test/mode":
            m = _qget(q, "m") or "normal"
            if m not in ("normal", "500", "503", "hang", "close", "delay", "garbage",
                         "noident", "redirect_other", "badtext"):
                return self.json_reply({"error": f"unknown mode {m}"}, 400)
            op.mode_arg = float(_qget(q, "s") or (30 if m == "hang" else 0))
            if m == "hang":
                op.release.clear()
            else:
                op.release.set()
            op.mode = m
            return self.json_reply({"ok": True, "mode": m})
        if path == "/__test/expire":
            cookie = _qget(q, "cookie")
            token = _qget(q, "token")
            n = 0
            if cookie:
                sid = op.decode_cookie(cookie)
                with op.lock:
                    if sid and op.sessions.pop(sid, None) is not None:
                        n += 1
            if token:
                with op.lock:
                    if op.tokens.pop(token, None) is not None:
                        n += 1
                    for k in [k for k in op.auth_header_cache if token in k]:
                        del op.auth_header_cache[k]
            return self.json_reply({"ok": True, "expired": n})
        return self.json_reply({"error": "unknown test endpoint"}, 404)


def _qget(q: dict, key: str) -> str:
    v = q.get(key)
    return v[0] if v else ""


def _split_groups(s: str) -> list[str]:
    return [g for g in re.split(r"[|,]", s) if g]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--mode", choices=["forward_single", "forward_domain"], default="forward_single",
                   help="provider mode; forward_domain matches skip regexes against the full URL")
    p.add_argument("--skip-path-regex", action="append", default=None,
                   help="may repeat (authentik: one regex per line); default ^/api/")
    p.add_argument("--external-host", default="", help="provider external host (default: from Host)")
    p.add_argument("--cookie-domain", default="")
    p.add_argument("--authentik-url", default="", help="browser URL of authentik (default: this server)")
    p.add_argument("--client-id", default="barbican-test-client")
    p.add_argument("--client-secret", default="barbican-test-client-secret")
    p.add_argument("--cookie-secret", default="barbican-test-cookie-secret")
    p.add_argument("--cookie-name", default="", help="override authentik_proxy_<sha256(client_id)[:8]>")
    p.add_argument("--scopes", default="openid email profile ak_proxy")
    p.add_argument("--app-slug", default="test-app")
    p.add_argument("--provider-name", default="test-provider")
    p.add_argument("--outpost-name", default="authentik Embedded Outpost")
    p.add_argument("--version", default="goauthentik.io/outpost/2025.10.0-test")
    p.add_argument("--access-token-validity", type=int, default=3600)
    p.add_argument("--auto-login-user", default="alice")
    p.add_argument("--auto-login-groups", default="admins|users")
    p.add_argument("--hosts", action="append", default=[],
                   help="known application hosts (exact or *.suffix); default: any")
    p.add_argument("--basic-auth-header", action="store_true",
                   help="also answer Authorization: Basic (provider basic_auth_enabled)")
    p.add_argument("--basic-auth-password", default="")
    p.add_argument("--signout-expire-cookie", action="store_true",
                   help="also expire the cookie on sign_out (authentik does not)")
    p.add_argument("--history", type=int, default=200)
    p.add_argument("--decision-log", type=int, default=0,
                   help="keep the last N forward-auth answers for GET /__test/decisions")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    if a.skip_path_regex is None:
        a.skip_path_regex = ["^/api/"]
    return a


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    op = Outpost(args)
    Handler.op = op
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 256
    srv = ThreadingHTTPServer((args.bind, args.port), Handler)
    op.port = srv.server_address[1]
    print(f"LISTENING {op.port}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
