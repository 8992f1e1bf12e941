"""deploy/envoy-gateway/ in real Envoy, in the shape Envoy Gateway generates for it.

tests/e2e/eg_xds.py turns the shipped manifests into the proxy's configuration the way Envoy
Gateway's translator does (file and commit in its header): Barbican's wasm filter disabled in
the HCM and enabled per route, its `config` as the plugin's JSON string, the module fetched
by Envoy itself from the control plane's wasm server and checked against the wasm's sha256,
the outpost and Authentik reached through the clusters Envoy Gateway names after the
HTTPRoutes' rules, and Envoy Gateway's HCM defaults (path normalization, merged slashes,
escaped slashes unescaped and redirected, headers with underscores rejected). The module is
the one that went through a real OCI registry (oci_registry.registry_wasm: tools/oci.py's
image of $BARBICAN_WASM pushed by skopeo and pulled back; Envoy Gateway's fetcher is a copy of
Istio's), served by a loopback stand-in of the control plane's wasm server at the same
unguessable path.

What differs on a loopback machine, and nothing else: every Service is a loopback port (the
outpost: servers/outpost.py; Authentik's server: the test OpenID provider; the apps: the echo
upstream); no TLS; the policy's `sha256` is the pulled image's manifest digest, whatever the
shipped file holds; and the Sonarr JWT provider's issuer, audiences and jwks.uri are the test
provider's (its cluster stays the shipped one).
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest

import eg_xds as E
import harness as H
import idp as I
import istio_xds as X
from oci_registry import registry, registry_wasm  # noqa: F401  (fixtures)

URL = "oci://registry.homelab.local/barbican:0.1.0"
APPS = ("sonarr.media.svc.cluster.local:8989", "grafana.monitoring.svc.cluster.local:80",
        "homepage.home.svc.cluster.local:3000", "uptime-kuma.home.svc.cluster.local:3001")
OUTPOST = "ak-outpost-authentik-embedded-outpost.authentik.svc.cluster.local:9000"
AUTHENTIK = "authentik-server.authentik.svc.cluster.local:80"
JSON_ACCEPT = ("Accept", "application/json")


def pinned(image: X.PulledImage) -> str:
    """The `sha256` to pin: the image's manifest digest, in hex."""
    return image.manifest_digest.split(":", 1)[1]


def use_test_provider(idp: I.IdpProc):
    disc = idp.discovery()

    def override(config: dict) -> dict:
        (p,) = config["jwt"]["providers"]
        p["issuer"], p["audiences"] = disc["issuer"], [I.RES_ES]
        p["jwks"]["uri"] = disc["jwks_uri"]
        return config
    return override


def generate(image, outpost, upstream, idp, server, *, pin: str, tmp: str,
             policy: str = "envoyextensionpolicy.yaml", secret_values={},
             overrides=None) -> E.ProxyConfig:
    m = E.load_manifests(E.eg_files(policy))
    m.policies[0]["spec"]["wasm"][0]["code"]["image"]["sha256"] = pin
    images = {URL: image}
    endpoints = {a: upstream.port for a in APPS} | {OUTPOST: outpost.port, AUTHENTIK: idp.port}
    provider = use_test_provider(idp)
    cfg = E.generate(m, endpoints=endpoints, images=images, wasm_server_port=server.port,
                     workdir=H.new_tmp_dir(tmp), secret_values=secret_values,
                     config_overrides=lambda c: (overrides or (lambda x: x))(provider(c)))
    server.modules.update({p: mod.file for p, mod in cfg.modules.items()})
    return cfg


@pytest.fixture(scope="module")
def server():
    s = E.WasmHTTPServer()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def gw(registry_wasm, outpost, upstream, idp, server):
    cfg = generate(registry_wasm, outpost, upstream, idp, server, pin=pinned(registry_wasm), tmp="eg")
    assert cfg.errors == []
    env = E.start_proxy(cfg)
    try:
        yield env, cfg
    finally:
        env.stop()


def get(env, host: str, target: str = "/", headers=None) -> H.Response:
    return H.get(env.port, target, host=host, headers=headers)


def test_envoy_fetched_the_module_from_the_control_plane_and_checked_it(gw, server, wasm,
                                                                         registry_wasm):
    env, cfg = gw
    (path,) = cfg.modules
    assert path == E.serving_path(URL, b"barbican-e2e-salt")
    assert server.requests and set(server.requests) == {path}
    (f,) = cfg.http_filters
    code = f["typed_config"]["config"]["vm_config"]["code"]["remote"]
    assert code["sha256"] == hashlib.sha256(wasm.read_bytes()).hexdigest() == \
        hashlib.sha256(registry_wasm.wasm_path.read_bytes()).hexdigest()
    assert code["http_uri"]["cluster"] == E.WASM_CLUSTER and f["disabled"] is True
    config = f["typed_config"]["config"]
    assert "fail_open" not in config and "failure_policy" not in config  # FAIL_CLOSED default
    assert json.loads(config["configuration"]["value"])["default_policy"] == "deny"
    assert all(f["name"] in r["typed_per_filter_config"]
               for vh in cfg.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]
               ["filters"][0]["typed_config"]["route_config"]["virtual_hosts"]
               for r in vh["routes"])


def test_browser_without_session_is_sent_to_the_login(gw, upstream):
    env, _ = gw
    seen = upstream.requests_seen()
    r = get(env, "grafana.homelab.local", "/dashboards", H.browser_headers())
    assert r.status == 302 and "/application/o/authorize/" in r.header("location"), r
    r = get(env, "grafana.homelab.local", "/d/home", [JSON_ACCEPT])
    assert r.status == 401 and not r.from_upstream, r
    # The outpost's old `^/api/` skip path answers "allowed" with no identity: the route's
    # groups still refuse it.
    r = get(env, "grafana.homelab.local", "/api/health", [JSON_ACCEPT])
    assert r.status == 403 and not r.from_upstream, r
    assert upstream.requests_seen() == seen


def test_session_costs_one_outpost_call_then_identity_comes_from_the_cache(gw, outpost):
    env, _ = gw
    cookie = outpost.cookie("alice", ["homelab-admins", "homelab-users"])
    before = outpost.auth_calls()
    for _ in range(3):
        r = get(env, "grafana.homelab.local", "/", H.browser_headers(cookie))
        assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"], r
    assert outpost.auth_calls() - before == 1
    # Groups decide: a homelab user without the admin group reaches home, not grafana.
    bob = outpost.cookie("bob", ["homelab-users"])
    assert get(env, "home.homelab.local", "/", H.browser_headers(bob)).status == 200
    assert get(env, "grafana.homelab.local", "/", H.browser_headers(bob)).status == 403


def test_login_flow_paths_reach_the_outpost_on_every_app_host(gw, outpost):
    env, _ = gw
    for host in ("sonarr.homelab.local", "grafana.homelab.local", "status.homelab.local"):
        r = get(env, host, "/outpost.goauthentik.io/ping")
        assert r.status == 204 and not r.from_upstream, (host, r)


def test_sonarr_api_takes_a_jwt_and_never_redirects(gw, idp, upstream):
    env, _ = gw
    idp.set_groups("api-reader", ["media"])
    try:
        token = idp.token(I.RES_ES, "read", "api-reader")
        r = None
        for _ in range(50):  # the key set is fetched through the route cluster on first use
            r = get(env, "sonarr.homelab.local", "/api/v3/series",
                    [JSON_ACCEPT, ("Authorization", f"Bearer {token}")])
            if r.status == 200:
                break
            time.sleep(0.1)
        assert r.status == 200 and r.upstream["path"] == "/api/v3/series", r
        r = get(env, "sonarr.homelab.local", "/api/v3/series", H.browser_headers())
        assert r.status == 401 and r.header("location") is None, r
        no_media = idp.token(I.RES_ES, "read", "api-admin")
        r = get(env, "sonarr.homelab.local", "/api/v3/series",
                [JSON_ACCEPT, ("Authorization", f"Bearer {no_media}")])
        assert r.status == 403 and not r.from_upstream, r
    finally:
        idp.set_groups("api-reader", ["users"])


@pytest.mark.parametrize("target,status,location", [
    ("/api/../admin", 302, "/application/o/authorize/"),
    ("/api/%2e%2e/admin", 302, "/application/o/authorize/"),
    ("//api/../admin", 302, "/application/o/authorize/"),
    # UNESCAPE_AND_REDIRECT: the client is sent to the unescaped, normalized path.
    ("/api/..%2fadmin", 307, "/admin"),
    ("/api/..%2Fadmin", 307, "/admin"),
])
def test_path_tricks_do_not_ride_the_api_rule(gw, upstream, target, status, location):
    env, _ = gw
    seen = upstream.requests_seen()
    r = get(env, "sonarr.homelab.local", target, H.browser_headers())
    # Envoy normalizes (or unescapes and redirects) before Barbican matches: never the
    # upstream, always the login (protected rule) or a redirect to the normalized path.
    assert r.status == status and location in (r.header("location") or ""), (target, r)
    assert upstream.requests_seen() == seen


def test_forged_identity_headers_are_stripped_on_a_bypass_route(gw, upstream):
    env, _ = gw
    r = get(env, "status.homelab.local", "/", H.SPOOFED_HEADERS)
    assert r.status == 200 and H.spoofed_leaks(r.upstream["headers"]) == [], r.upstream
    # Underscore spellings never get in: Envoy Gateway's HCM rejects them outright.
    seen = upstream.requests_seen()
    r = get(env, "status.homelab.local", "/", H.SPOOFED_UNDERSCORE_HEADERS[:1])
    assert r.status == 400 and upstream.requests_seen() == seen, r


def test_a_pin_that_does_not_match_the_image_turns_every_route_into_a_500(
        registry_wasm, outpost, upstream, idp, server):
    # A stale pin, or the zeros of an unpinned policy: Envoy Gateway's cache refuses the
    # image and fails the Gateway's routes closed; Envoy never gets a wasm filter.
    cfg = generate(registry_wasm, outpost, upstream, idp, server, pin="0" * 64, tmp="eg-pin")
    (err,) = cfg.errors
    assert "which does not match: " + "0" * 64 in err, err
    assert cfg.http_filters == [] and all(r.direct_500 for r in cfg.routes)
    env = E.start_proxy(cfg)
    try:
        seen = upstream.requests_seen()
        for host in ("grafana.homelab.local", "status.homelab.local", "auth.homelab.local"):
            assert get(env, host, "/", H.browser_headers()).status == 500
        assert upstream.requests_seen() == seen
    finally:
        env.stop()


def test_module_not_matching_its_sha256_is_refused_by_envoy(registry_wasm, outpost, upstream, idp,
                                                            tmp_path):
    # The control plane serves bytes that are not the module it pinned (a corrupted cache
    # entry): Envoy refuses them, fetches again with its retry policy, and never serves.
    server = E.WasmHTTPServer()
    try:
        cfg = generate(registry_wasm, outpost, upstream, idp, server, pin=pinned(registry_wasm), tmp="eg-sha")
        bad = tmp_path / "corrupted.wasm"
        data = bytearray(registry_wasm.wasm_path.read_bytes())
        data[-1] ^= 1
        bad.write_bytes(bytes(data))
        server.modules.update({p: bad for p in server.modules})
        seen = upstream.requests_seen()
        with pytest.raises(TimeoutError, match="not ready"):
            E.start_proxy(cfg, ready_timeout=4)
        assert len(server.requests) >= 2, server.requests  # refused, fetched again
        assert upstream.requests_seen() == seen
    finally:
        server.stop()


FAIL_CLOSED = "Plugin configured to fail closed failed to load"


def test_invalid_config_is_refused_with_its_json_path(registry_wasm, outpost, upstream, idp, server):
    def typo(config: dict) -> dict:
        config["routes"][1]["policy"] = "bypas"
        return config
    cfg = generate(registry_wasm, outpost, upstream, idp, server, pin=pinned(registry_wasm), tmp="eg-bad",
                   overrides=typo)
    env = E.start_proxy(cfg)
    try:
        seen = upstream.requests_seen()
        assert get(env, "status.homelab.local", "/", H.browser_headers()).status == 503
        assert upstream.requests_seen() == seen
        log = H.wait_until(lambda: FAIL_CLOSED in env.log_text() and env.log_text(), 10,
                           what="the plugin's refusal in Envoy's log")
        assert "routes[1].policy" in log, log[-2000:]
    finally:
        env.stop()


SECRETS = (("barbican-secrets", "session-secret"), ("barbican-secrets", "oidc-client-secret"))


def test_oidc_policy_reads_its_secrets_through_host_keys(registry_wasm, outpost, upstream, idp, server):
    session, client = "s" * 48, "client-secret-value"
    cfg = generate(registry_wasm, outpost, upstream, idp, server, pin=pinned(registry_wasm), tmp="eg-oidc",
                   policy="envoyextensionpolicy-oidc.yaml",
                   secret_values=dict(zip(SECRETS, (session, client))))
    (f,) = cfg.http_filters
    assert f["typed_config"]["config"]["vm_config"]["environment_variables"] == {
        "host_env_keys": ["BARBICAN_SESSION_SECRET", "BARBICAN_OIDC_CLIENT_SECRET"]}
    env = E.start_proxy(cfg)
    try:
        r = get(env, "grafana.homelab.local", "/", H.browser_headers())
        assert r.status == 302, r
        assert r.header("location").startswith(
            "https://auth.homelab.local/application/o/authorize/?"), r
        assert session not in env.log_text() and client not in env.log_text()
    finally:
        env.stop()


def test_oidc_policy_with_the_secret_as_shipped_stops_traffic(registry_wasm, outpost, upstream, idp,
                                                               server):
    cfg = generate(registry_wasm, outpost, upstream, idp, server, pin=pinned(registry_wasm), tmp="eg-empty",
                   policy="envoyextensionpolicy-oidc.yaml",
                   secret_values=dict.fromkeys(SECRETS, ""))
    env = E.start_proxy(cfg)
    try:
        seen = upstream.requests_seen()
        for host in ("grafana.homelab.local", "status.homelab.local"):
            assert get(env, host, "/", H.browser_headers()).status == 503
        assert upstream.requests_seen() == seen
        log = H.wait_until(lambda: FAIL_CLOSED in env.log_text() and env.log_text(), 10,
                           what="the plugin's refusal in Envoy's log")
        assert ("session.oidc.secrets[0]: environment variable BARBICAN_SESSION_SECRET is "
                "empty") in log, log[-2000:]
    finally:
        env.stop()


def test_a_cluster_name_that_drifted_fails_closed_and_says_which(registry_wasm, outpost, upstream, idp,
                                                                 server):
    # What renaming the outpost route, or turning on EnvoyProxy mergeBackends (shared
    # clusters named service/<ns>/<name>/<port>), would do to the shipped document.
    drifted = "service/authentik/ak-outpost-authentik-embedded-outpost/9000"

    def rename(config: dict) -> dict:
        config["session"]["forward_auth"]["cluster"] = drifted
        return config
    cfg = generate(registry_wasm, outpost, upstream, idp, server, pin=pinned(registry_wasm), tmp="eg-drift",
                   overrides=rename)
    env = E.start_proxy(cfg)
    try:
        seen = upstream.requests_seen()
        cookie = outpost.cookie("alice", ["homelab-admins", "homelab-users"])
        r = get(env, "grafana.homelab.local", "/", H.browser_headers(cookie))
        assert r.status == 503 and upstream.requests_seen() == seen, r
        H.wait_until(lambda: f'callout to cluster "{drifted}" failed' in env.log_text(), 5,
                     what="the unknown cluster in Envoy's log")
    finally:
        env.stop()
