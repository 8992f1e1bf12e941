"""deploy/istio/ in real Envoy, in the shape Istio's ingress gateway runs it.

tests/e2e/istio_xds.py turns the shipped manifests (WasmPlugin, Gateway, VirtualServices,
Secret, the gateway's env patch) into what istiod and the gateway's agent hand Envoy (file
and commit in its header): the plugin by ECDS with `root_id` from `pluginName`,
`pluginConfig` as JSON in a StringValue, Istio's vm_config and env, the gateway HCM defaults
(normalize_path on, merge_slashes off, escaped slashes kept, use_remote_address), the
VirtualService routes and `outbound|<port>||<fqdn>` clusters. The `oci://` module is the
one that went through a real registry (oci_registry.registry_wasm: tools/oci.py's image,
pushed by skopeo, pulled back the way Istio's fetcher pulls it) and the pin is the
manifest's `sha256` as shipped.

What a loopback machine changes, and nothing else: every Service's endpoints are the test
servers (the outpost stand-in, the npm oidc-provider as Authentik's OAuth2 provider, the
echo upstream for every app), the registry host is the loopback registry, no TLS (so
`x-forwarded-proto` is http). The few pluginConfig fields replaced for the test provider
are named in OVERRIDES below.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

import browser as B
import harness as H
import idp as I
import istio_xds as X
from oci_registry import oci, registry, registry_wasm  # noqa: F401  (fixtures)

URL = "oci://registry.homelab.local/barbican:0.1.0"
OUTPOST = "ak-outpost-authentik-embedded-outpost.authentik.svc.cluster.local:9000"
AUTHENTIK = "authentik-server.authentik.svc.cluster.local:80"
APPS = ["sonarr.media.svc.cluster.local:8989", "grafana.monitoring.svc.cluster.local:80",
        "homepage.home.svc.cluster.local:3000", "uptime-kuma.home.svc.cluster.local:3001"]
SONARR_ISSUER = "https://auth.homelab.local/application/o/sonarr/"
SESSION_SECRET = "istio-e2e-session-secret-0123456789abcdef-0123"
HTML = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
JSON = ("Accept", "application/json")
HOME = "http://home.homelab.local"


# --- what the loopback machine replaces ------------------------------------------------

def jwks_path(idp: I.IdpProc):
    """Forward-auth plugin: Authentik serves the sonarr provider's keys at
    /application/o/sonarr/jwks/, the test provider at its own jwks path (same host, same
    cluster). Issuer and audience stay Authentik's: the test signs tokens with them."""
    def override(pc: dict) -> dict:
        for p in pc["jwt"]["providers"]:
            u = urllib.parse.urlsplit(p["jwks"]["uri"])
            p["jwks"]["uri"] = urllib.parse.urlunsplit(
                u._replace(path=idp.endpoint_path("jwks_uri")))
        return pc
    return override


def oidc_endpoints(idp: I.IdpProc):
    """Native OIDC plugin: the test provider's issuer and endpoints in place of Authentik's
    (`https://auth.homelab.local/...`), its registered client `barbican-code` in place of
    `barbican-homelab`, `http://` in place of `https://` for the redirect URIs and a
    non-`secure` cookie (no TLS on loopback). Clusters, domains, scopes, routes, the secrets'
    env names: as shipped."""
    disc = idp.discovery()

    def override(pc: dict) -> dict:
        o = pc["session"]["oidc"]
        o["issuer"] = disc["issuer"]
        for k in ("authorization_endpoint", "token_endpoint", "end_session_endpoint"):
            o[k] = disc[k]
        o["jwks"]["uri"] = disc["jwks_uri"]
        o["client_id"] = "barbican-code"
        o["redirect_uri"] = o["redirect_uri"].replace("https://", "http://")
        o["post_logout_redirect_uri"] = o["post_logout_redirect_uri"].replace("https://",
                                                                              "http://")
        o["cookie"]["secure"] = False
        return jwks_path(idp)(pc)
    return override


OIDC_SECRETS = {("barbican-secrets", "session-secret"): SESSION_SECRET,
                ("barbican-secrets", "oidc-client-secret"): I.RP_CLIENTS["barbican-code"][1]}


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def homelab_idp():
    """The test OpenID provider standing in for Authentik, with the homelab's groups and
    redirect URIs."""
    p = I.start_idp(generations=1,
                    redirect_uris=[f"{HOME}/.barbican/callback"],
                    post_logout_redirect_uris=[f"{HOME}/"],
                    extra_args=["--user-groups", "alice=homelab-users|homelab-admins|media",
                                "--user-groups", "bob=homelab-users"])
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def endpoints(outpost, upstream, homelab_idp) -> dict[str, int]:
    return {OUTPOST: outpost.port, AUTHENTIK: homelab_idp.port,
            **{a: upstream.port for a in APPS}}


@pytest.fixture(scope="module")
def images(registry_wasm) -> dict[str, X.PulledImage]:
    """The registry.homelab.local image is the one on the loopback registry (same tag)."""
    assert registry_wasm.image_ref.endswith("/" + URL.rsplit("/", 1)[1]), registry_wasm
    return {URL: registry_wasm}


def manifests(wasmplugin: str = "wasmplugin.yaml") -> X.Manifests:
    return X.load_manifests(X.istio_files(wasmplugin))


def generate(m: X.Manifests, endpoints, images, overrides=None,
             secrets=None) -> X.GatewayConfig:
    """The gateway's config; `secrets`: the Secret's values as the operator filled them."""
    return X.generate(m, endpoints=endpoints, images=images,
                      workdir=H.new_tmp_dir("istio-gw"), plugin_overrides=overrides,
                      secret_values=OIDC_SECRETS if secrets is None else secrets)


@pytest.fixture(scope="module")
def shipped_pin_matches(registry_wasm):
    for name in ("wasmplugin.yaml", "wasmplugin-oidc.yaml"):
        pin = manifests(name).wasmplugins[0]["spec"]["sha256"]
        if pin != registry_wasm.manifest_digest.split(":", 1)[1]:
            pytest.fail(f"deploy/istio/{name} pins {pin}, but the image of $BARBICAN_WASM "
                        f"is {registry_wasm.manifest_digest}: run `make pin`", pytrace=False)


@pytest.fixture(scope="module")
def fa(shipped_pin_matches, endpoints, images, homelab_idp):
    """The forward-auth gateway (deploy/istio/wasmplugin.yaml)."""
    cfg = generate(manifests(), endpoints, images, jwks_path(homelab_idp))
    assert cfg.agent_errors == []
    gw = X.start_gateway(cfg)
    gw.cfg = cfg
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def oidc_gw(shipped_pin_matches, endpoints, images, homelab_idp):
    """The native OIDC gateway (deploy/istio/wasmplugin-oidc.yaml, secrets from the env)."""
    cfg = generate(manifests("wasmplugin-oidc.yaml"), endpoints, images,
                   oidc_endpoints(homelab_idp), OIDC_SECRETS)
    assert cfg.agent_errors == []
    gw = X.start_gateway(cfg)
    try:
        yield gw
    finally:
        gw.stop()


def get(gw, host: str, path: str = "/", headers=(), **kw) -> H.Response:
    return H.get(gw.port, path, host=host, headers=list(headers), **kw)


# --- the generated configuration -------------------------------------------------------

def test_envoy_gets_what_istio_generates(fa, registry_wasm):
    cfg = fa.cfg
    hcm = cfg.bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"]
    assert (hcm["normalize_path"], hcm["merge_slashes"],
            hcm["path_with_escaped_slashes_action"]) == (True, False, "KEEP_UNCHANGED")
    name = "extensions.istio.io/trafficextension/istio-system.barbican~istio-translated-wasmplugin"
    assert hcm["http_filters"][0]["name"] == name
    assert "config_discovery" in hcm["http_filters"][0]
    (res,) = cfg.ecds["resources"]
    assert res["name"] == name
    wasm_cfg = res["typed_config"]["config"]
    assert wasm_cfg["root_id"] == "barbican"
    assert wasm_cfg["failure_policy"] == "FAIL_CLOSED"
    assert wasm_cfg["configuration"]["@type"] == X.STRING_VALUE
    shipped = manifests().wasmplugins[0]["spec"]["pluginConfig"]
    sent = json.loads(wasm_cfg["configuration"]["value"])
    assert sent["routes"] == shipped["routes"] and sent["session"] == shipped["session"]
    vm = wasm_cfg["vm_config"]
    assert "vm_id" not in vm and vm["runtime"] == "envoy.wasm.runtime.v8"
    assert "environment_variables" not in vm  # only ISTIO_META_* were there: stripped
    path = Path(vm["code"]["local"]["filename"])
    assert path.name == registry_wasm.manifest_digest.split(":")[1] + ".wasm"
    assert path.read_bytes() == registry_wasm.wasm_path.read_bytes()
    assert "outbound|9000||" + OUTPOST.rsplit(":", 1)[0] in {c["name"] for c in cfg.clusters}


# --- forward auth (the ingress-nginx auth-url setup, moved) ----------------------------

def test_browser_without_session_is_sent_to_the_login(fa, outpost, upstream):
    before = upstream.requests_seen()
    r = get(fa, "home.homelab.local", "/dash?tab=2", [HTML])
    assert r.status == 302, r
    assert "/application/o/authorize/" in r.header("location"), r
    assert r.header("server") == "istio-envoy"
    last = outpost.last_auth()
    assert last["path"] == "/outpost.goauthentik.io/auth/envoy/dash?tab=2"
    assert last["host"] == "home.homelab.local"
    r = get(fa, "home.homelab.local", "/dash", [JSON])
    assert r.status == 401, r
    assert upstream.requests_seen() == before


def test_a_session_costs_one_outpost_call_and_carries_identity(fa, outpost):
    cookie = outpost.cookie("alice", ["homelab-users"])
    before = outpost.auth_calls()
    for i in range(10):
        r = get(fa, "home.homelab.local", f"/page/{i}", H.browser_headers(cookie))
        assert r.status == 200 and r.from_upstream, r
        assert r.upstream_header("x-authentik-username") == ["alice"]
        assert r.upstream_header("x-authentik-groups") == ["homelab-users"]
    assert outpost.auth_calls() - before == 1
    # What Istio's gateway HCM adds on the way: with use_remote_address Envoy sets
    # x-envoy-external-address and appends one X-Forwarded-For entry (without it, neither
    # reaches the upstream); the attempt count (include_request_attempt_count) and a request id.
    assert r.upstream_header("x-envoy-external-address") == ["127.0.0.1"]
    assert len(r.upstream_header("x-forwarded-for")) == 1
    assert r.upstream_header("x-forwarded-proto") == ["http"]
    assert r.upstream_header("x-envoy-attempt-count") == ["1"]
    assert len(r.upstream_header("x-request-id")) == 1


def test_groups_decide_which_app(fa, outpost):
    bob = outpost.cookie("bob", ["homelab-users"])
    assert get(fa, "grafana.homelab.local", "/", H.browser_headers(bob)).status == 403
    assert get(fa, "home.homelab.local", "/", H.browser_headers(bob)).status == 200
    admin = outpost.cookie("alice", ["homelab-users", "homelab-admins"])
    r = get(fa, "grafana.homelab.local", "/d/x", H.browser_headers(admin))
    assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"], r


def test_the_outpost_paths_reach_the_outpost(fa):
    r = get(fa, "sonarr.homelab.local", "/outpost.goauthentik.io/ping")
    assert r.status == 204 and not r.from_upstream, r


def test_sonarr_api_takes_a_jwt_and_never_redirects(fa, outpost, homelab_idp):
    def token(groups):
        return homelab_idp.sign(homelab_idp.claims(iss=SONARR_ISSUER, aud="sonarr-api",
                                                   groups=groups))
    before = outpost.auth_calls()
    r = get(fa, "sonarr.homelab.local", "/api/v3/series",
            [("Authorization", f"Bearer {token(['media'])}")])
    assert r.status == 200 and r.from_upstream, r
    assert r.upstream_header("x-authentik-username") == ["api-admin"]
    r = get(fa, "sonarr.homelab.local", "/api/v3/series", [HTML])
    assert r.status == 401 and r.header("www-authenticate") and not r.from_upstream, r
    r = get(fa, "sonarr.homelab.local", "/api/v3/series",
            [("Authorization", f"Bearer {token(['homelab-users'])}")])
    assert r.status == 403, r
    assert outpost.auth_calls() == before


@pytest.mark.parametrize("target", [
    "/outpost.goauthentik.io/../dash",
    "/outpost.goauthentik.io/%2e%2e/dash",
    "/outpost.goauthentik.io/..%2fdash",
    "/outpost.goauthentik.io%2f..%2fdash",
    "/api/%2e%2e/dash",
    "/api/..%2f..%2fdash",
])
def test_path_tricks_do_not_ride_bypass_or_api_rules(fa, homelab_idp, target):
    """Istio's defaults leave %2e and %2f alone: Barbican's own normalization decides."""
    tok = homelab_idp.sign(homelab_idp.claims(iss=SONARR_ISSUER, aud="sonarr-api",
                                              groups=["media"]))
    for headers in ([HTML], [JSON, ("Authorization", f"Bearer {tok}")]):
        r = get(fa, "sonarr.homelab.local", target, headers)
        assert not r.from_upstream, (target, r)
        assert r.status in (400, 401, 302, 403, 404), (target, r)


def test_forged_identity_headers_are_stripped_on_a_bypass_route(fa):
    r = get(fa, "status.homelab.local", "/",
            H.SPOOFED_HEADERS + H.SPOOFED_UNDERSCORE_HEADERS)
    assert r.status == 200 and r.from_upstream, r
    assert H.spoofed_leaks(r.upstream["headers"]) == []


# --- native OIDC (wasmplugin-oidc.yaml, secrets from the gateway's env) -----------------

def test_native_oidc_login_then_no_idp_calls(oidc_gw, homelab_idp):
    b = B.Browser(hosts={h: ("127.0.0.1", oidc_gw.port) for h in
                         ("home.homelab.local", "grafana.homelab.local")})
    r = I.browser_login(b, f"{HOME}/start?x=1", "alice")
    assert r.url == f"{HOME}/start?x=1"
    seen = r.json()["headers"]
    assert seen["x-authentik-username"] == ["alice"]
    attrs = b.cookie_attrs("home.homelab.local", "barbican_session")
    assert attrs and attrs["domain"].lstrip(".") == "homelab.local", attrs
    homelab_idp.reset()
    for i in range(5):  # the session cookie is for the whole domain
        r = b.get(f"http://grafana.homelab.local/d/{i}")
        assert r.status == 200 and r.json()["headers"]["x-authentik-username"] == ["alice"], r
    st = homelab_idp.stats()
    assert st["authorization"] + st["token_code"] + st["login"] == 0, st
    assert SESSION_SECRET not in oidc_gw.log_text()


# --- bad input: the gateway fails closed, with the reason in its log ---------------------

def test_invalid_plugin_config_is_refused_with_its_json_path(shipped_pin_matches, endpoints,
                                                             images, upstream):
    def typo(pc: dict) -> dict:
        pc["routes"][3]["require_grups"] = pc["routes"][3].pop("require_groups")
        return pc
    cfg = generate(manifests(), endpoints, images, typo)
    assert_fails_closed(cfg, upstream, "routes[3].require_grups")


@pytest.mark.parametrize("value,problem", [("", "is empty"), (None, "is not set")])
def test_missing_or_empty_secret_is_refused_by_name(shipped_pin_matches, endpoints, images,
                                                    upstream, homelab_idp, value, problem):
    secrets = dict(OIDC_SECRETS)
    if value is None:   # the Deployment patch not applied: the variable is not there at all
        m = manifests("wasmplugin-oidc.yaml")
        m.deployment_patches = []
    else:               # the Secret applied as shipped: present but empty
        m = manifests("wasmplugin-oidc.yaml")
        secrets[("barbican-secrets", "session-secret")] = value
    cfg = generate(m, endpoints, images, oidc_endpoints(homelab_idp), secrets)
    assert_fails_closed(cfg, upstream, f"BARBICAN_SESSION_SECRET {problem}",
                        secret=I.RP_CLIENTS["barbican-code"][1])


def test_wrong_pin_is_caught_and_everything_denied(shipped_pin_matches, endpoints, images,
                                                   upstream, registry_wasm):
    m = manifests()
    other = oci.build_image(registry_wasm.wasm_path.read_bytes() + b"\x00\x02\x01x").digest
    m.wasmplugins[0]["spec"]["sha256"] = other.split(":")[1]
    cfg = generate(m, endpoints, images)
    (err,) = cfg.agent_errors
    assert (f"has checksum {registry_wasm.manifest_digest.split(':')[1]}, which does not "
            f"match: {other.split(':')[1]}") in err
    assert cfg.ecds["resources"][0]["typed_config"]["@type"] == X.RBAC_TYPE
    gw = X.start_gateway(cfg)
    try:
        before = upstream.requests_seen()
        for host in ("status.homelab.local", "home.homelab.local"):
            r = get(gw, host, "/", [HTML])
            assert r.status == 403 and r.body == b"RBAC: access denied", r
        assert upstream.requests_seen() == before
    finally:
        gw.stop()


def assert_fails_closed(cfg: X.GatewayConfig, upstream, reason: str, secret: str = "") -> None:
    """Envoy either refuses to start or serves nothing but errors; its log names `reason`."""
    assert cfg.agent_errors == []
    before = upstream.requests_seen()
    try:
        gw = X.start_gateway(cfg, ready_timeout=20)
    except H.ProcessExited as e:
        log = e.log
    else:
        try:
            for host in ("status.homelab.local", "home.homelab.local"):
                r = get(gw, host, "/", [HTML])
                assert r.status == 500 and not r.from_upstream, r
            log = H.wait_until(lambda: reason in gw.log_text() and gw.log_text(), 10,
                               what=f"{reason!r} in the gateway log")
        finally:
            gw.stop()
    assert reason in log, log[-3000:]
    assert "barbican" in log
    if secret:
        assert secret not in log
    assert upstream.requests_seen() == before
