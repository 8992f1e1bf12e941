"""deploy/traefik/ in real Traefik 3.7: the Middleware's plugin document, as shipped, loads
and protects the IngressRoute's hosts.

What the Helm chart and Kubernetes would give the Traefik container is rebuilt on loopback:
the plugin directory of the `barbican-traefik-plugin` ConfigMap (plugin.wasm + .traefik.yml
from `make build`) at plugins-local/src/barbican, the plugin settings from the values file's
`additionalArguments` (envs, mounts; the mount's host side is a temp directory standing for
the `authentik-jwks` ConfigMap volume), the session secret in Traefik's environment (the
Secret through `env`), and one router per IngressRoute route (rule, middleware, service).
The provider's keys are the test OpenID provider's; tokens are signed with them under the
manifest's issuer and audience. Nothing in the plugin document is changed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest

import harness as H
import idp as I
import k8s_schema as K
import traefik as T

DEPLOY = H.REPO / "deploy" / "traefik"
SESSION_SECRET = "traefik-k8s-e2e-session-secret-0123456789abcdef"
FLAG = re.compile(r"^--experimental\.localPlugins\.barbican\.settings\.(envs|mounts)=(.+)$")


def plugin_document() -> dict:
    (mw,) = K.load_documents(DEPLOY / "middleware.yaml")
    return mw["spec"]["plugin"]["barbican"]


def plugin_settings(mount_host_dir) -> dict:
    (values,) = K.load_documents(DEPLOY / "values.yaml")
    settings: dict = {}
    for arg in values["additionalArguments"]:
        m = FLAG.match(arg)
        if m:
            settings[m.group(1)] = m.group(2).split(",")
    # The pod's /etc/barbican (the ConfigMap volume) is this directory here.
    settings["mounts"] = [f"{mount_host_dir}:{m.split(':', 2)[1]}:{m.split(':', 2)[2]}"
                          for m in settings["mounts"]]
    return settings


def routers() -> dict:
    (ir,) = K.load_documents(DEPLOY / "ingressroute.yaml")
    out = {}
    for i, r in enumerate(ir["spec"]["routes"]):
        assert [m["name"] for m in r["middlewares"]] == ["barbican"], r
        out[f"r{i}"] = {"rule": r["match"], "entryPoints": [T.ENTRYPOINT],
                        "middlewares": ["barbican"], "service": "upstream"}
    return out


def start(idp, upstream, monkeypatch, secret=SESSION_SECRET):
    jwks_dir = H.new_tmp_dir("authentik-jwks")
    (jwks_dir / "authentik-jwks.json").write_text(json.dumps(idp.jwks()))
    monkeypatch.setenv("BARBICAN_SESSION_SECRET", secret)

    def probe(t: T.TraefikProc) -> bool:
        try:
            return H.get(t.port, "/", host="home.apps.internal", timeout=2).status != 404
        except OSError:
            return False

    return T.start_traefik(routers=routers(), middlewares={"barbican": T.plugin_middleware(
        plugin_document())}, services={"upstream": upstream.port},
        plugin_settings={"barbican": plugin_settings(jwks_dir)},
        probe=probe)


@pytest.fixture(scope="module")
def module_monkeypatch():
    mp = pytest.MonkeyPatch()
    try:
        yield mp
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def traefik(idp, upstream, module_monkeypatch):
    t = start(idp, upstream, module_monkeypatch)
    try:
        yield t
    finally:
        t.stop()


def token(idp, groups=("grafana-editors",), **claims) -> str:
    now = int(time.time())
    doc = plugin_document()["jwt"]["providers"][0]
    payload = {"iss": doc["issuer"], "aud": doc["audiences"][0], "sub": "ci-bot",
               "preferred_username": "ci-bot", "iat": now, "exp": now + 600,
               "groups": list(groups)}
    payload.update(claims)
    return idp.sign(payload, alg="ES256")


def test_the_shipped_document_loads(traefik):
    built = traefik.routers()
    for name in routers():
        assert built[name]["status"] == "enabled", built[name]


def test_browser_is_sent_to_the_provider_by_form_post(traefik, upstream):
    upstream.reset()
    r = H.get(traefik.port, "/", host="home.apps.internal", headers=H.browser_headers())
    assert r.status == 302, r
    loc = urllib.parse.urlsplit(r.header("Location"))
    q = urllib.parse.parse_qs(loc.query)
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == \
        "https://auth.apps.internal/application/o/authorize/"
    assert q["response_type"] == ["id_token"] and q["response_mode"] == ["form_post"], q
    assert q["client_id"] == ["barbican-apps"]
    assert q["redirect_uri"] == ["https://home.apps.internal/.barbican/callback"]
    assert upstream.requests_seen() == 0


def test_api_token_groups_decide_and_client_identity_headers_are_stripped(traefik, idp):
    forged = H.SPOOFED_HEADERS + [("X-WEBAUTH-USER", "admin"), ("X-Forwarded-User", "admin")]
    r = H.get(traefik.port, "/api/dashboards/home", host="grafana.apps.internal",
              headers=[("Authorization", f"Bearer {token(idp)}")] + forged)
    assert r.status == 200 and r.from_upstream, r
    assert r.upstream_header("x-authentik-username") == ["ci-bot"]
    assert r.upstream_header("x-authentik-groups") == ["grafana-editors"]
    assert r.upstream_header("x-webauth-user") == [] and r.upstream_header("x-forwarded-user") == []
    assert H.spoofed_leaks({k: v for k, v in r.upstream["headers"].items()
                            if not k.startswith("x-authentik-")}) == []
    r = H.get(traefik.port, "/api/dashboards/home", host="grafana.apps.internal",
              headers={"Authorization": f"Bearer {token(idp, groups=['grafana-viewers'])}"})
    assert r.status == 403, r
    r = H.get(traefik.port, "/api/dashboards/home", host="grafana.apps.internal",
              headers=H.browser_headers())
    assert r.status == 401, r


def test_hosts_outside_the_ingressroute_are_not_served(traefik, upstream):
    upstream.reset()
    r = H.get(traefik.port, "/", host="evil.example")
    assert r.status == 404 and upstream.requests_seen() == 0


def test_the_shipped_empty_secret_blocks_everything(idp, upstream):
    mp = pytest.MonkeyPatch()
    try:
        t = start(idp, upstream, mp, secret="")
    finally:
        mp.undo()
    try:
        upstream.reset()
        statuses = set()
        for _ in range(3):
            statuses.add(H.get(t.port, "/", host="home.apps.internal",
                               headers=H.browser_headers()).status)
        assert statuses == {503}, statuses
        assert upstream.requests_seen() == 0
        assert ("session.oidc.secrets[0]: environment variable BARBICAN_SESSION_SECRET is "
                "empty") in t.log_text()
    finally:
        t.stop()
