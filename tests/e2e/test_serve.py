"""`barbican serve` driven directly, with the headers each proxy sends (serve_host.py), in
front of the outpost test server (servers/outpost.py, Authentik's forward-auth protocol) and
the test OpenID provider (servers/oidc, npm oidc-provider): the issue's contract for the
server side of every front (Traefik forwardAuth, Caddy forward_auth, nginx auth_request,
Envoy ext_authz), its trust rule, bounds, health, metrics and SIGTERM drain.

Protocol sources: goauthentik/authentik internal/outpost/proxyv2/application/mode_forward.go
(the four endpoints, nginx answering 401 where the others redirect), traefik/traefik
pkg/middlewares/auth/forward.go (X-Forwarded-*), caddyserver/caddy
modules/caddyhttp/reverseproxy/forwardauth/caddyfile.go, nginx ngx_http_auth_request_module
(2xx allows, 401/403 deny, anything else is an error), envoy
api/envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto (path_prefix).
"""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest

import harness as H
import idp as I
import serve_host as S

FRONTS = ["traefik", "caddy", "nginx", "envoy"]


@pytest.fixture(scope="module")
def stack(outpost, idp):
    sv = S.start_serve(S.serve_config(outpost.port, idp))
    try:
        yield sv
    finally:
        sv.stop()


@pytest.mark.parametrize("front", FRONTS)
def test_login_redirect_for_a_browser(stack, outpost, front):
    r = S.ask(stack, front, "/dash?tab=1", H.browser_headers())
    loc = r.header("Location") or ""
    assert "/application/o/authorize/" in loc, r
    # nginx's auth_request passes only 2xx/401/403: the example's error_page 401 redirects.
    assert r.status == (401 if front == "nginx" else 302), r
    assert S.identity(r) == {}


@pytest.mark.parametrize("front", FRONTS)
def test_api_client_without_a_session_gets_401_not_a_redirect(stack, front):
    r = S.ask(stack, front, "/dash", [("Accept", "application/json")])
    assert r.status == 401 and not r.header("Location"), r


@pytest.mark.parametrize("front", FRONTS)
def test_session_allowed_with_identity_headers_for_the_proxy(stack, outpost, front):
    r = S.ask(stack, front, "/admin/x", H.browser_headers(outpost.cookie(user=f"u-{front}")))
    assert r.status == 200, r
    ident = S.identity(r)
    assert ident["x-authentik-username"] == f"u-{front}"
    assert ident["x-authentik-groups"] == "admins|users"


def test_cached_session_one_outpost_call_per_session(stack, outpost):
    cookie = outpost.cookie(user="dave")
    assert S.ask(stack, "traefik", "/", H.browser_headers(cookie)).status == 200
    before = outpost.auth_calls()
    with H.KeepAliveClient(stack.port, host=f"127.0.0.1:{stack.port}") as c:
        for i in range(200):
            r = c.request(S.FORWARDED_PATH["traefik"],
                          headers=S.forwarded(f"/page/{i}") + H.browser_headers(cookie))
            assert r.status == 200, r
    calls = outpost.auth_calls() - before
    assert calls / 200 <= 0.001, f"{calls} outpost calls for 200 requests"


def test_groups_rule_denies_a_session_without_the_group(stack, outpost):
    cookie = outpost.cookie(user="guest", groups=["users"])
    assert S.ask(stack, "caddy", "/dash", H.browser_headers(cookie)).status == 200
    r = S.ask(stack, "caddy", "/admin/", H.browser_headers(cookie))
    assert r.status == 403 and S.identity(r) == {}, r


@pytest.mark.parametrize("front", FRONTS)
def test_api_route_with_a_jwt_verified_against_keys_fetched_over_http(stack, idp, front):
    tok = idp.token(I.RES_ES, "read")
    r = S.ask(stack, front, "/api/v3/queue", [("Authorization", f"Bearer {tok}"),
                                               ("Accept", "application/json")])
    assert r.status == 200, r
    assert S.identity(r)["x-authentik-uid"] == I.jwt_payload(tok)["sub"]
    r = S.ask(stack, front, "/api/v3/queue", [("Accept", "application/json")])
    assert r.status == 401, r
    assert (r.header("WWW-Authenticate") or "").lower().startswith("bearer"), r


def test_api_route_with_an_opaque_token_introspected_once(stack, idp):
    tok = idp.token(I.RES_OPAQUE, "read")
    before = idp.count("introspection")
    for _ in range(5):
        r = S.ask(stack, "traefik", "/api/v3/queue", [("Authorization", f"Bearer {tok}")])
        assert r.status == 200, r
    assert idp.count("introspection") - before == 1


PATH_TRICKS = ["/api/../admin", "/api/%2e%2e/admin", "/api/%2E%2E/admin", "//api/..//admin",
               "/api/./../admin", "/api/..%2fadmin"]


@pytest.mark.parametrize("front", ["traefik", "nginx", "envoy"])
@pytest.mark.parametrize("uri", PATH_TRICKS)
def test_path_tricks_with_an_api_token_never_reach_admin(stack, idp, front, uri):
    tok = idp.token(I.RES_ES, "read")
    r = S.ask(stack, front, uri, [("Authorization", f"Bearer {tok}"),
                                   ("Accept", "application/json")])
    assert r.status in (400, 401, 403), r
    assert S.identity(r) == {}


def test_client_forwarded_headers_cannot_name_another_uri(stack, outpost):
    """The proxy's X-Forwarded-Uri says /admin; a client's copy of the header arrives as a
    second one (Traefik with trustForwardHeader, a careless Caddy): refused, not picked."""
    h = S.forwarded("/admin") + [("X-Forwarded-Uri", "/public/x")] + H.browser_headers()
    r = stack.request(S.FORWARDED_PATH["traefik"], headers=h)
    assert r.status == 400, r
    h = S.nginx("/admin") + [("X-Original-URI", "/public/x")]
    assert stack.request(S.FORWARDED_PATH["nginx"], headers=h).status == 400
    # X-Original-URL is never read: the nginx original is X-Original-URI alone.
    h = S.nginx("/admin") + [("X-Original-URL", "http://app.test/public/x")] + H.browser_headers()
    r = stack.request(S.FORWARDED_PATH["nginx"], headers=h)
    assert r.status == 401 and "/application/o/authorize/" in (r.header("Location") or ""), r


@pytest.mark.parametrize("missing", ["X-Forwarded-Method", "X-Forwarded-Proto",
                                     "X-Forwarded-Host", "X-Forwarded-Uri"])
def test_missing_forwarded_header_is_400(stack, missing):
    h = [(k, v) for k, v in S.forwarded("/public/x") if k != missing]
    r = stack.request(S.FORWARDED_PATH["caddy"], headers=h)
    assert r.status == 400, r


@pytest.mark.parametrize("name,value", [("X-Forwarded-Uri", "not-a-path"),
                                        ("X-Forwarded-Uri", "http://app.test/public/x"),
                                        ("X-Forwarded-Proto", "ftp"),
                                        ("X-Forwarded-For", "not-an-address")])
def test_unparsable_forwarded_header_is_400(stack, name, value):
    h = [(k, v) for k, v in S.forwarded("/public/x") if k != name] + [(name, value)]
    r = stack.request(S.FORWARDED_PATH["traefik"], headers=h)
    assert r.status == 400, r


def test_bypass_route_answers_200_without_identity_and_without_the_outpost(stack, outpost):
    before = outpost.auth_calls()
    r = S.ask(stack, "traefik", "/public/x", [("X-authentik-username", "mallory")])
    assert r.status == 200 and S.identity(r) == {}, r
    assert outpost.auth_calls() == before


def test_oversize_header_is_refused(stack, outpost):
    # 20 KB of cookie against serve.max_header_bytes 16384: hyper answers 431 itself.
    r = S.ask(stack, "traefik", "/dash", [("Cookie", "a=" + "x" * 20000)])
    assert r.status == 431, r


def test_a_request_from_an_untrusted_peer_is_refused_whatever_it_names(outpost):
    cfg = S.serve_config(outpost.port)
    cfg["trusted_proxies"] = ["192.0.2.1/32"]   # not loopback: this test is a client
    sv = S.start_serve(cfg)
    try:
        before = outpost.auth_calls()
        for front in FRONTS:
            r = S.ask(sv, front, "/public/x", H.browser_headers(outpost.cookie()))
            assert r.status == 403 and S.identity(r) == {}, (front, r)
        assert outpost.auth_calls() == before
        assert "barbican_refused_total{reason=\"untrusted_peer\"} 4" in sv.metrics()
    finally:
        sv.stop()


def test_sign_out_drops_the_cached_decision(stack, outpost):
    cookie = outpost.cookie(user="frank")
    assert S.ask(stack, "traefik", "/", H.browser_headers(cookie)).status == 200
    assert S.ask(stack, "traefik", "/", H.browser_headers(cookie)).status == 200
    before = outpost.auth_calls()
    # The proxy asks serve about the sign-out request first (a bypass route), then forwards
    # it to the outpost, which ends the session.
    r = S.ask(stack, "traefik", "/outpost.goauthentik.io/sign_out", H.browser_headers(cookie))
    assert r.status == 200, r
    outpost.expire(cookie_value=cookie.split("=", 1)[1])
    r = S.ask(stack, "traefik", "/", H.browser_headers(cookie))
    assert r.status == 302, r
    assert outpost.auth_calls() == before + 1, "the cached allow answered after sign-out"


def test_healthz_and_metrics(stack, outpost, idp):
    assert stack.request("/healthz").status == 200
    S.ask(stack, "traefik", "/", H.browser_headers(outpost.cookie(user="m")))
    text = stack.metrics()
    for needle in ('barbican_decisions_total{outcome="allow"}',
                   'barbican_cache_total{result="hit"}',
                   'barbican_callouts_total{cluster="authentik",status="2xx"}',
                   'barbican_jwks_refreshes_total{result="ok"}',
                   'barbican_request_duration_seconds_bucket{le="+Inf"}',
                   "barbican_ready 1"):
        assert needle in text, (needle, text)
    assert stack.metric('barbican_decisions_total{outcome="allow"}') >= 1
    assert stack.metric('barbican_jwks_refreshes_total{result="ok"}') >= 1
    # Never a credential in metrics or logs.
    assert "authentik_proxy_" not in text
    log = stack.log_text()
    assert "authentik_proxy_" not in log and "Bearer" not in log and "eyJ" not in log
    assert "decision front=" in log


def test_not_ready_until_the_first_key_set_is_fetched(outpost):
    cfg = S.serve_config(outpost.port)
    dead = H.free_port()
    cfg["clusters"]["idp"] = f"http://127.0.0.1:{dead}"
    cfg["jwt"] = {"providers": [{"issuer": f"http://127.0.0.1:{dead}", "audiences": ["a"],
                                 "jwks": {"uri": f"http://127.0.0.1:{dead}/jwks",
                                          "cluster": "idp"}}]}
    sv = S.start_serve(cfg, wait_healthy=False)
    try:
        time.sleep(1.0)
        assert sv.request("/healthz").status == 503
        assert sv.metric("barbican_ready") == 0
        assert sv.metric('barbican_jwks_refreshes_total{result="error"}') >= 1
    finally:
        sv.stop()


def test_idp_down_stale_grace_then_fail_closed(idp):
    op = H.start_outpost(skip_path_regex=None)
    sv = None
    try:
        sv = S.start_serve(S.serve_config(op.port, ttl_s=1, stale_grace_s=3, timeout_ms=1000))
        cookie = op.cookie(user="grace")
        t0 = time.monotonic()
        assert S.ask(sv, "traefik", "/", H.browser_headers(cookie)).status == 200
        op.set_mode("500")
        time.sleep(max(0.0, t0 + 1.4 - time.monotonic()))    # past ttl_s, inside the grace
        r = S.ask(sv, "traefik", "/", H.browser_headers(cookie))
        assert r.status == 200 and S.identity(r)["x-authentik-username"] == "grace", r
        time.sleep(max(0.0, t0 + 5.6 - time.monotonic()))    # past the grace window
        r = S.ask(sv, "traefik", "/", H.browser_headers(cookie))
        assert r.status == 503 and r.header("Retry-After"), r
        r = S.ask(sv, "nginx", "/", H.browser_headers(op.cookie(user="new")))
        assert r.status == 503 and S.identity(r) == {}, r
        assert sv.metric('barbican_cache_total{result="stale_served"}') >= 1
    finally:
        if sv:
            sv.stop()
        op.stop()


# --- an outpost that misbehaves -----------------------------------------------------------

class BadOutpost:
    """A forward-auth endpoint that answers garbage, slowly, or with a redirect elsewhere."""

    def __init__(self, mode: str, elsewhere: int = 0) -> None:
        self.mode = mode
        self.elsewhere = elsewhere
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.answer, args=(c,), daemon=True).start()

    def answer(self, c: socket.socket) -> None:
        try:
            c.settimeout(5)
            c.recv(65536)
            if self.mode == "garbage":
                c.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
            elif self.mode == "slow":
                self.stop_flag.wait(3.0)
                c.sendall(b"HTTP/1.1 200 OK\r\nX-authentik-username: slow\r\n"
                          b"Content-Length: 0\r\n\r\n")
            elif self.mode == "redirect":
                c.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/steal\r\n"
                          b"Content-Length: 0\r\n\r\n" % self.elsewhere)
        except OSError:
            pass
        finally:
            c.close()

    def close(self) -> None:
        self.stop_flag.set()
        self.sock.close()


class Counter(http.server.ThreadingHTTPServer):
    hits = 0


def test_outpost_garbage_slow_or_redirecting_elsewhere_fails_closed():
    elsewhere = Counter(("127.0.0.1", 0), type("H", (http.server.BaseHTTPRequestHandler,), {
        "do_GET": lambda self: (setattr(self.server, "hits", self.server.hits + 1),
                                self.send_response(200), self.end_headers()),
        "log_message": lambda self, *a: None}))
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    bad = {m: BadOutpost(m, elsewhere.server_address[1]) for m in ("garbage", "slow", "redirect")}
    servers = []
    try:
        for mode, op in bad.items():
            sv = S.start_serve(S.serve_config(op.port, timeout_ms=1000))
            servers.append(sv)
            for front in FRONTS:
                for headers in (H.browser_headers("authentik_proxy_x=abc"),
                                [("Cookie", "authentik_proxy_x=abc"), ("Accept", "application/json")]):
                    t0 = time.monotonic()
                    r = S.ask(sv, front, "/dash", headers)
                    assert r.status not in range(200, 300) and S.identity(r) == {}, (mode, front, r)
                    assert time.monotonic() - t0 < 2.5, (mode, front, "timeout not honoured")
                    if mode != "redirect":
                        assert r.status == 503, (mode, front, r)
        assert elsewhere.hits == 0, "serve followed the outpost's redirect"
    finally:
        for sv in servers:
            sv.stop()
        for op in bad.values():
            op.close()
        elsewhere.shutdown()


# workers 1 (the default): one thread; 2: the work-stealing runtime (doc.rs, serve.workers).
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_lets_in_flight_requests_finish_and_refuses_new_ones(outpost, workers):
    cfg = S.serve_config(outpost.port, timeout_ms=4000)
    cfg["serve"]["workers"] = workers
    sv = S.start_serve(cfg)
    try:
        cookie = outpost.cookie(user="drain")
        outpost.set_mode("delay", 1.5)
        result: dict = {}

        def slow() -> None:
            result["r"] = S.ask(sv, "traefik", "/", H.browser_headers(cookie))

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.5)            # the callout is under way
        sv.terminate()
        time.sleep(0.3)
        with pytest.raises(OSError):
            S.ask(sv, "traefik", "/public/x")
        t.join(10)
        assert result["r"].status == 200, result
        assert sv.popen.wait(10) == 0
        assert "every connection finished" in sv.log_text()
    finally:
        outpost.set_mode("normal")
        sv.stop()


def test_yaml_document_and_refusal_with_every_problem(outpost, tmp_path):
    yaml_doc = f"""
clusters: {{authentik: "http://127.0.0.1:{outpost.port}"}}
session:
  mode: forward_auth
  forward_auth: {{dialect: authentik, cluster: authentik}}
trusted_proxies: ["127.0.0.1/32"]
routes:
  - match: {{path_prefix: /}}
    policy: protected
"""
    sv = S.start_serve(yaml_doc, suffix=".yaml")
    try:
        assert S.ask(sv, "caddy", "/", H.browser_headers(outpost.cookie())).status == 200
    finally:
        sv.stop()
    import subprocess
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_doc.replace(f'"http://127.0.0.1:{outpost.port}"', '"ftp://x"')
                   .replace('trusted_proxies: ["127.0.0.1/32"]',
                            "trusted_proxies: []\nserve: {listen: nope}"))
    expected = ["clusters.authentik: must be an http:// or https:// URL",
                'clusters: missing "authentik" (used at session.forward_auth.cluster)',
                "trusted_proxies: serve believes the forwarded request",
                "serve.listen: must be ADDRESS:PORT"]
    for cmd in (["serve", str(bad)], ["check", "--host", "serve", str(bad)]):
        p = subprocess.run([str(S.require_binary()), *cmd], capture_output=True, text=True,
                           timeout=20)
        assert p.returncode == 1, (cmd, p)
        for e in expected:
            assert f"{bad}: {e}" in p.stdout, (cmd, e, p.stdout)
    # Envoy takes its clusters from its bootstrap: the same document is fine for it.
    p = subprocess.run([str(S.require_binary()), "check", "--host", "envoy", str(bad)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0 and p.stdout.strip().endswith(": ok"), p


# --- https clusters (rustls) against a loopback server with a test CA ---------------------

def _test_ca_and_cert(d):
    """A CA and a server certificate for 127.0.0.1 signed by it (cryptography)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "barbican test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "cert.pem").write_bytes(cert.public_bytes(pem))
    (d / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


def test_https_cluster_verified_against_the_configured_ca(tmp_path):
    import ssl
    ca, cert, key = _test_ca_and_cert(tmp_path)
    seen: list[str] = []

    class Outpost(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Host", ""))
            self.send_response(200)
            self.send_header("X-authentik-username", "tls-user")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Outpost)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    servers = []
    try:
        cfg = S.serve_config(0)
        cfg["clusters"]["authentik"] = f"https://127.0.0.1:{srv.server_address[1]}"
        cfg["serve"]["ca_file"] = str(ca)
        sv = S.start_serve(cfg)
        servers.append(sv)
        r = S.ask(sv, "traefik", "/", H.browser_headers("authentik_proxy_t=1"))
        assert r.status == 200 and S.identity(r)["x-authentik-username"] == "tls-user", r
        assert seen == [H.DEFAULT_HOST], seen   # Host is the original's, as on Envoy
        # The same server is not trusted without the CA: no answer, fail closed.
        del cfg["serve"]["ca_file"]
        sv2 = S.start_serve(cfg)
        servers.append(sv2)
        r = S.ask(sv2, "traefik", "/", H.browser_headers("authentik_proxy_t=1"))
        assert r.status == 503 and S.identity(r) == {}, r
        assert "TLS" in sv2.log_text()
    finally:
        for s in servers:
            s.stop()
        srv.shutdown()


def test_check_host_traefik_lists_what_the_plugin_cannot_do(outpost, tmp_path):
    import subprocess
    cfg = S.serve_config(outpost.port)
    path = tmp_path / "c.json"
    import json
    path.write_text(json.dumps(cfg))
    p = subprocess.run([str(S.require_binary()), "check", "--host", "traefik", str(path)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert f"{path}: session: Traefik plugins cannot make network calls" in p.stdout, p.stdout
    for host in ("serve", "envoy"):
        p = subprocess.run([str(S.require_binary()), "check", "--host", host, str(path)],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 0 and p.stdout.strip() == f"{path}: ok", (host, p.stdout)


def test_forward_headers_answers_only_the_named_identity_headers(outpost):
    """`forward_headers` in serve: the answer the proxy copies carries only the named headers
    (never the groups header `require_groups` still reads, under its engine-private name)."""
    cfg = S.serve_config(outpost.port)
    cfg["forward_headers"] = ["X-authentik-username"]
    sv = S.start_serve(cfg)
    try:
        admin = outpost.cookie(user="erin", groups=["admins"])
        for _ in range(2):  # the outpost's answer, then the cached decision
            r = S.ask(sv, "traefik", "/admin/x", H.browser_headers(admin))
            assert r.status == 200, r
            assert S.identity(r) == {"x-authentik-username": "erin"}, r
            assert not any(n.startswith(":") for n, _ in r.headers), r
        guest = outpost.cookie(user="guest2", groups=["users"])
        assert S.ask(sv, "traefik", "/admin/x", H.browser_headers(guest)).status == 403
    finally:
        sv.stop()
