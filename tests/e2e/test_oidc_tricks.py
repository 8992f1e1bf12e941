"""Open redirects and session tampering against Barbican's native OIDC sessions, on both
wasm hosts at once: real Envoy (authorization code flow + PKCE, token exchange by callout)
and real Traefik (form_post: the browser POSTs the id_token), one of each plus one real npm
`oidc-provider` for the module (oidc_hosts.py). Both hosts run without their own path
clean-up (Envoy's HCM not hardened, Traefik's `sanitizePath: false`), the way user and Istio
configs may leave them, so Barbican alone decides.

In oidc mode the URL a login returns to is never a parameter: it is the request's own URL,
sealed into `state`, checked against the configured domains when the login starts and again
when it ends; the post-logout URL is the configured one. So every trick is sent where an
attacker can reach: the request's path, query (`rd=`, `return_to=`...), `Host`, absolute-form
target and `X-Forwarded-Proto` at the login start, and the logout's query and `Host`. A trick
is *accepted* when any redirect Barbican answers would take a browser (WHATWG rules: tab/CR/LF
dropped, `\\` read as `/`) off `app.test` and the provider, or to a non-http(s) scheme, or
splits a header. Each login trick that starts a login is driven through the real provider
(the module's browser has a provider session) and Barbican's callback, and the final
redirect is judged too.

Defence in depth: a login state sealed with the right secret (as a leaked secret or a bug in
the start check would allow) that names another host, `//evil`, userinfo or `javascript:`,
driven through the real provider with a matching nonce (and PKCE verifier): the callback's
own check refuses it.

Session and callback tampering: truncated, bit-flipped, re-encoded and purpose-confused
cookies, a cookie from the other host's Barbican (another secret), a cookie replayed after
logout; a state swapped between browsers, a nonce mismatch (form_post: a real id_token from
another login), a callback without state or with two, a reused code and a swapped code
(Envoy: PKCE refuses it before the nonce is reached), a replayed form_post.

Covered elsewhere, counted in the figure (see `COVERED_ELSEWHERE`): forged Host at the login
start, `//` `/\\` `/%2F%2F` paths end-to-end in a real browser, tampered / expired / foreign /
garbage cookies, a cookie copied before logout (Envoy) and forged / replayed / provider-error
callbacks (test_oidc_envoy.py, test_oidc_traefik.py). Traefik's copied cookie after logout
stays valid by design (instances share nothing): asserted, reported apart.

The figure: run with `-s` for one line per host (tricks tried, here and in the two suites,
and accepted); `BARBICAN_E2E_VERBOSE=1` also lists where each login trick ended.
"""

from __future__ import annotations

import os
import re
import struct
import sys
import time
import urllib.parse

import pytest

import browser as B
import harness as H
import idp as I
import oidc_hosts as O
import session_cookie as SC

SECRETS = {"envoy": "tricks-envoy-secret-0123456789abcdef-0123456789",
           "traefik": "tricks-traefik-secret-0123456789abcdef-012345678"}
APP = O.APP
COOKIE = O.COOKIE
EVIL = "evil.example"

# The tests of the two existing OIDC suites that are tricks of this kind, by host.
COVERED_ELSEWHERE = {
    "envoy": ["forged Host evil.example", "forged Host app.test.evil.example",
              "path //evil (browser)", "path /\\evil (browser)", "path /%2F%2Fevil (browser)",
              "tampered cookie", "expired cookie", "foreign-secret cookie", "garbage cookie",
              "forged state", "javascript: state", "provider error callback",
              "cookie copied after logout"],
    "traefik": ["forged Host evil.example", "forged Host app.test.evil.example",
                "expired cookie", "foreign-secret cookie", "tampered cookie",
                "forged form_post", "GET callback"],
}


@pytest.fixture(scope="module")
def hosts(wasm, idp, upstream):
    env = O.start_envoy(wasm, idp, upstream, [SECRETS["envoy"]], hardened=False)
    try:
        t = O.start_traefik(idp, upstream, [SECRETS["traefik"]], sanitize_path=False)
    except BaseException:
        env.stop()
        raise
    try:
        yield {"envoy": O.RpHost("envoy", env, idp, SECRETS["envoy"]),
               "traefik": O.RpHost("traefik", t, idp, SECRETS["traefik"])}
    finally:
        t.stop()
        env.stop()


@pytest.fixture(scope="module")
def provider_browser(idp):
    """A browser logged in at the provider (not at app.test, which it cannot reach): it
    answers authorization requests without a password, and stops where the provider sends
    it back to app.test."""
    return B.Browser()


OUTCOMES: list = []
TALLY: dict[str, dict[str, list[str]]] = {"envoy": {"tried": [], "accepted": []},
                                           "traefik": {"tried": [], "accepted": []}}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    lines = []
    for name, t in TALLY.items():
        tried = len(t["tried"]) + len(COVERED_ELSEWHERE[name])
        lines.append(f"oidc tricks {name}: {tried} tried ({len(t['tried'])} here, "
                     f"{len(COVERED_ELSEWHERE[name])} in test_oidc_{name}.py), "
                     f"{len(t['accepted'])} accepted {t['accepted']}")
    if os.environ.get("BARBICAN_E2E_VERBOSE"):
        lines += [f"  {n} {t!r}: {st} -> {(where or '')[:110]!r}" for n, t, st, where in OUTCOMES]
    sys.__stderr__.write("\n" + "\n".join(lines) + "\n")


def tally(host: O.RpHost, what: str, accepted: bool) -> None:
    TALLY[host.name]["tried"].append(what)
    if accepted:
        TALLY[host.name]["accepted"].append(what)


# ---------------------------------------------------------------------------------------
# where a browser goes
# ---------------------------------------------------------------------------------------

def browser_target(location: str, base: str = f"{APP}/x") -> tuple[str, str]:
    """(scheme, host) a browser navigates to for this Location (WHATWG URL parsing, the
    parts that matter: leading/trailing C0 and spaces trimmed, tab/CR/LF removed anywhere,
    `\\` is `/` in http(s) URLs, relative references resolved against the page)."""
    s = re.sub(r"[\t\r\n]", "", location).strip("\x00-\x20 ")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", s)
    if m and m.group(1).lower() not in ("http", "https"):
        return m.group(1).lower(), ""
    s = s.replace("\\", "/")
    url = urllib.parse.urljoin(base, s)
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        return parts.scheme, "userinfo:" + netloc
    return parts.scheme, (parts.hostname or "")


def off_site(location: str | None, provider: str) -> bool:
    """Whether a redirect to `location` leaves app.test and the provider."""
    if location is None:
        return False
    if any(c in location for c in "\r\n"):
        return True   # a split header
    scheme, host = browser_target(location)
    return scheme not in ("http", "https") or host not in ("app.test", provider)


# ---------------------------------------------------------------------------------------
# return-to tricks at the login start
# ---------------------------------------------------------------------------------------

LONG = "/" + "a" * 3000 + "//" + EVIL
# (name, request target, extra headers, Host header)
LOGIN_TRICKS = [
    ("//evil", f"//{EVIL}/x", [], "app.test"),
    ("/\\evil", f"/\\{EVIL}/x", [], "app.test"),
    ("/\\\\evil", f"/\\\\{EVIL}", [], "app.test"),
    ("https:evil in rd", f"/x?rd=https:{EVIL}", [], "app.test"),
    ("%2F%2Fevil", f"/%2F%2F{EVIL}", [], "app.test"),
    ("%5C%5Cevil", f"/%5C%5C{EVIL}", [], "app.test"),
    ("/..//evil", f"/..//{EVIL}", [], "app.test"),
    ("userinfo Host app@evil", "/x", [], f"app.test@{EVIL}"),
    ("Host evil#@app", "/x", [], f"{EVIL}#@app.test"),
    ("Host app:evil", "/x", [], f"app.test:{EVIL}"),
    ("absolute-form http://app@evil", f"http://app.test@{EVIL}/x", [], "app.test"),
    ("absolute-form http://evil#@app", f"http://{EVIL}#@app.test/x", [], "app.test"),
    ("absolute-form http://evil", f"http://{EVIL}/x", [], "app.test"),
    ("encoded tab", f"/x%09//{EVIL}", [], "app.test"),
    ("encoded CR LF header split", f"/x%0D%0ALocation:%20http://{EVIL}/", [], "app.test"),
    ("raw tab in path", f"/x\t//{EVIL}", [], "app.test"),
    ("raw tab in Host", "/x", [], f"app.test\t{EVIL}"),
    ("fullwidth solidus raw", f"/\uff0f\uff0f{EVIL}".encode().decode("latin-1"), [],
     "app.test"),
    ("fullwidth solidus encoded", f"/%EF%BC%8F%EF%BC%8F{EVIL}", [], "app.test"),
    ("ideographic full stop Host", "/x", [], "app\u3002test".encode().decode("latin-1")),
    ("ideographic full stop evil Host", "/x", [],
     f"app.test\u3002{EVIL}".encode().decode("latin-1")),
    ("javascript: in rd", "/x?rd=javascript:alert(document.cookie)", [], "app.test"),
    ("javascript X-Forwarded-Proto", "/x", [("X-Forwarded-Proto", "javascript")], "app.test"),
    ("X-Forwarded-Proto with a URL", "/x", [("X-Forwarded-Proto", f"https://{EVIL}/#")],
     "app.test"),
    ("data: in rd", "/x?rd=data:text/html,%3Cscript%3Ealert(1)%3C/script%3E", [], "app.test"),
    ("scheme-relative with spaces", f"/%20%20//{EVIL}", [], "app.test"),
    ("scheme-relative with spaces in rd", f"/x?rd=%20%20//{EVIL}", [], "app.test"),
    ("very long path", LONG, [], "app.test"),
    ("very long rd", "/x?rd=" + ("//" + EVIL) * 250, [], "app.test"),
    ("other-domain rd", f"/x?rd=https://{EVIL}/", [], "app.test"),
    ("other-domain return_to", f"/x?return_to=http%3A%2F%2F{EVIL}%2F", [], "app.test"),
    ("X-Forwarded-Host evil", "/x", [("X-Forwarded-Host", EVIL)], "app.test"),
]


@pytest.mark.parametrize("name", ["envoy", "traefik"])
@pytest.mark.parametrize("trick,target,extra,hostname", LOGIN_TRICKS,
                         ids=[t[0] for t in LOGIN_TRICKS])
def test_login_return_tricks(hosts, provider_browser, idp, name, trick, target, extra,
                             hostname):
    host = hosts[name]
    provider = "127.0.0.1"
    r = host.raw(target, extra, host=hostname)
    loc = r.header("Location")
    accepted = off_site(loc, provider) or r.from_upstream and r.status != 200
    final = None
    if r.status == 302 and loc and loc.startswith(host.auth_prefix):
        # The login started: finish it at the provider and see where Barbican sends us.
        done = O.callback(host, O.provider_answer(provider_browser, loc), O.login_cookie(r))
        final = done.header("Location")
        assert done.status == 302 and final, (trick, done)
        accepted = accepted or off_site(final, provider)
        assert browser_target(final)[1] == "app.test", (trick, final)
    elif r.status == 302:
        accepted = accepted or not loc.startswith(APP + "/")
    tally(host, f"login {trick}", accepted)
    OUTCOMES.append((name, trick, r.status, final or loc))
    assert not accepted, (trick, r.status, loc, final)
    assert r.status in (302, 400, 404, 414, 431) or r.from_upstream, (trick, r)


# ---------------------------------------------------------------------------------------
# post-logout tricks
# ---------------------------------------------------------------------------------------

LOGOUT_VALUES = [
    f"//{EVIL}", f"/\\{EVIL}", f"https:{EVIL}", f"%2F%2F{EVIL}", f"%5C%5C{EVIL}",
    f"http://app.test@{EVIL}/", f"http://{EVIL}#@app.test/", f"/\t/{EVIL}", f"/\r\n/{EVIL}",
    f"\uff0f\uff0f{EVIL}", f"http://app\u3002test.{EVIL}/", "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", f"  //{EVIL}  ", f"https://{EVIL}/",
    "/" + "a" * 3000 + f"//{EVIL}",
]
LOGOUT_PARAMS = ["post_logout_redirect_uri", "rd", "redirect_uri", "return_to", "next"]


@pytest.mark.parametrize("name", ["envoy", "traefik"])
def test_post_logout_tricks(hosts, name):
    """Every trick in every parameter a logout URL could carry, with and without a session:
    the Location is always exactly the configured end-session URL with the configured
    post-logout URI."""
    host = hosts[name]
    session = SC.session_cookie(host.secret, "alice", int(time.time()) + 600, user="alice")
    bad = []
    for value in LOGOUT_VALUES:
        for param in LOGOUT_PARAMS:
            q = urllib.parse.urlencode({param: value})
            for cookie in (None, f"{COOKIE}={session}"):
                r = host.raw("/.barbican/logout?" + q,
                             [("Cookie", cookie)] if cookie else [])
                ok = r.status == 302 and r.header("Location") == host.logout_location
                if not ok:
                    bad.append((value[:40], param, r.status, r.header("Location")))
        tally(host, f"logout {value[:40]!r}", any(b[0] == value[:40] for b in bad))
    # The same with Host and path tricks on the logout itself.
    for target, hostname in ((f"/.barbican/logout?rd=//{EVIL}", f"app.test@{EVIL}"),
                             ("/.barbican/logout", f"{EVIL}#@app.test"),
                             (f"//{EVIL}/.barbican/logout", "app.test"),
                             (f"/.barbican/logout/..//{EVIL}", "app.test")):
        r = host.raw(target, host=hostname)
        accepted = off_site(r.header("Location"), "127.0.0.1")
        tally(host, f"logout {target} Host {hostname}", accepted)
        if accepted:
            bad.append((target, hostname, r.status, r.header("Location")))
    assert not bad, bad


# ---------------------------------------------------------------------------------------
# session cookie tampering
# ---------------------------------------------------------------------------------------

def get_with_cookie(host: O.RpHost, value: str, path: str = "/admin/x") -> H.Response:
    return host.raw(path, [("Cookie", f"{COOKIE}={value}")])


@pytest.mark.parametrize("name", ["envoy", "traefik"])
def test_tampered_and_confused_session_cookies(hosts, provider_browser, name):
    host = hosts[name]
    other = hosts["traefik" if name == "envoy" else "envoy"]
    _, good = O.full_login(host, provider_browser)
    assert get_with_cookie(host, good).status == 200
    _, foreign = O.full_login(other, provider_browser)
    auth, lc = O.start(host)
    flipped = good[:20] + ("A" if good[20] != "A" else "B") + good[21:]
    cases = {
        "truncated by one": good[:-1],
        "truncated to half": good[:len(good) // 2],
        "only the key id and nonce": good[:17],
        "a bit flipped in the middle": flipped,
        "key id byte changed": ("B" if good[0] != "B" else "C") + good[1:],
        "padded base64": good + "==",
        "standard base64 alphabet": good.replace("-", "+").replace("_", "/") + "+/",
        "percent-encoded": "%{:02X}".format(ord(good[0])) + good[1:],
        "another Barbican's cookie (other secret)": foreign,
        "the sealed login state as a session": O.state_of(auth),
        "the login binding cookie as a session": lc.split("=", 1)[1],
        "empty": "",
        # (A DQUOTE-wrapped value is the same cookie, RFC 6265 §4.1.1: not a trick.)
        "two cookies, garbage first": "x" * 40 + f"; {COOKIE}={good}",
    }
    accepted = []
    for what, value in cases.items():
        r = get_with_cookie(host, value)
        if r.status == 200 or r.from_upstream:
            accepted.append(what)
        tally(host, f"cookie {what}", r.status == 200 or r.from_upstream)
        assert r.status in (302, 400), (what, r)
    # A valid session under the configured secret, sealed for another purpose (the login
    # state's key): refused.
    state_sealed = SC.seal(host.secret, SC.session_plaintext("alice", int(time.time()) + 600,
                                                             user="alice",
                                                             groups=["admins"]),
                           purpose="login-state")
    r = get_with_cookie(host, state_sealed)
    tally(host, "cookie session plaintext sealed as login-state", r.status == 200)
    if r.status == 200:
        accepted.append("purpose confusion")
    assert not accepted, accepted


def test_traefik_cookie_replayed_after_logout(hosts, provider_browser):
    """Traefik's instances share nothing: logout clears the browser's cookie, but a copy
    stays valid on the instances that never saw the logout until the session's own expiry
    (README, "Native OIDC sessions", logout revocation). Asserted so that a change is
    noticed; reported apart from the tricks, as it bypasses no check. (Envoy marks the
    session revoked for every worker: test_oidc_envoy.py, cookie copied after logout.)"""
    t = hosts["traefik"]
    _, value = O.full_login(t, provider_browser)
    r = t.raw("/.barbican/logout", [("Cookie", f"{COOKIE}={value}")])
    assert r.status == 302 and any(c.startswith(f"{COOKIE}=;") for c in r.header_all("Set-Cookie"))
    r = get_with_cookie(t, value)
    OUTCOMES.append(("traefik", "cookie replayed after logout (documented)", r.status, ""))
    assert r.status in (200, 302)


# ---------------------------------------------------------------------------------------
# the callback: state, nonce, code
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["envoy", "traefik"])
def test_state_swapped_missing_or_repeated(hosts, provider_browser, name):
    host = hosts[name]
    auth_a, lc_a = O.start(host)
    auth_b, lc_b = O.start(host)
    answer_a = O.provider_answer(provider_browser, auth_a)
    no_state = {k: v for k, v in answer_a.items() if k != "state"}
    cases = {
        # A's answer delivered to B's browser (login CSRF: the attacker's login in the
        # victim's browser).
        "state of another browser": (answer_a, lc_b),
        "no state": (no_state, lc_a),
        "empty state": ({**no_state, "state": ""}, lc_a),
        "two states": (list(no_state.items()) + [("state", O.state_of(auth_a)),
                                                 ("state", O.state_of(auth_b))], lc_a),
        "state without its login cookie": (answer_a, None),
        "state with the login cookie value tampered": (answer_a, lc_a[:-2] + "AA"),
    }
    for what, (fields, cookie) in cases.items():
        r = O.callback(host, fields, cookie)
        accepted = O.session_from(r) is not None
        tally(host, f"callback {what}", accepted)
        assert not accepted and r.status == 400, (what, r)
    # Control: the untouched answer in the right browser logs in.
    r = O.callback(host, answer_a, lc_a)
    assert r.status == 302 and O.session_from(r) and r.header("Location") == f"{APP}/x", r


def test_envoy_code_reused_or_swapped_is_refused(hosts, provider_browser, idp):
    host = hosts["envoy"]
    auth, lc = O.start(host)
    answer = O.provider_answer(provider_browser, auth)
    first = O.callback(host, answer, lc)
    assert first.status == 302 and O.session_from(first), first
    # The same code again, even with the login cookie restored (a replay by whoever saw the
    # callback URL in a log or a Referer): the provider refuses a used code.
    before = idp.count("token_code")
    again = O.callback(host, answer, lc)
    tally(host, "callback reused code", O.session_from(again) is not None)
    assert again.status == 400 and O.session_from(again) is None, again
    assert idp.count("token_code") == before + 1, "the reuse reached the provider"
    # Code of login B delivered with the state of login A (its nonce and PKCE verifier):
    # the provider refuses the verifier, so the nonce check is never even reached.
    auth_a, lc_a = O.start(host)
    auth_b, _ = O.start(host)
    answer_b = O.provider_answer(provider_browser, auth_b)
    swapped = {**answer_b, "state": O.state_of(auth_a)}
    r = O.callback(host, swapped, lc_a)
    tally(host, "callback code of another login (PKCE / nonce)", O.session_from(r) is not None)
    assert r.status == 400 and O.session_from(r) is None, r
    # An id_token slipped into the code flow's callback instead of a code.
    auth_c, lc_c = O.start(host)
    r = O.callback(host, {"id_token": "e30.e30.sig", "state": O.state_of(auth_c)}, lc_c)
    tally(host, "callback id_token instead of code", O.session_from(r) is not None)
    assert r.status == 400 and O.session_from(r) is None, r


def test_traefik_nonce_mismatch_and_replayed_form_post(hosts, provider_browser):
    host = hosts["traefik"]
    auth_a, lc_a = O.start(host)
    auth_b, lc_b = O.start(host)
    answer_b = O.provider_answer(provider_browser, auth_b)
    # A real, valid id_token of login B (nonce B) with the state and cookie of login A.
    r = O.callback(host, {**answer_b, "state": O.state_of(auth_a)}, lc_a)
    tally(host, "callback nonce mismatch", O.session_from(r) is not None)
    assert r.status == 401 and O.session_from(r) is None, r
    # Control: B's own pieces together log in; the browser then has no login cookie, and
    # the same POST replayed from it is refused.
    ok = O.callback(host, answer_b, lc_b)
    assert ok.status == 302 and O.session_from(ok), ok
    replay = O.callback(host, answer_b, None)
    tally(host, "callback replayed form_post", O.session_from(replay) is not None)
    assert replay.status == 400 and O.session_from(replay) is None, replay
    # An id_token minted for another client (the code-flow client), same user and nonce
    # unknown: refused (audience).
    auth_c, lc_c = O.start(host)
    forged = idp_token_for_other_client(hosts["envoy"], provider_browser)
    r = O.callback(host, {"id_token": forged, "state": O.state_of(auth_c)}, lc_c)
    tally(host, "callback id_token of another client", O.session_from(r) is not None)
    assert r.status == 401 and O.session_from(r) is None, r


def idp_token_for_other_client(envoy: O.RpHost, b: B.Browser) -> str:
    """An id_token the provider issued to `barbican-code` (Envoy's client), by a code
    exchange done here."""
    verifier, challenge = I.pkce_pair()
    url = envoy.idp.authorize_url("barbican-code", state="s", nonce="n",
                                  code_challenge=challenge)
    answer = O.provider_answer(b, url)
    r = envoy.idp.exchange_code(answer["code"], code_verifier=verifier)
    assert r.status == 200, r
    return r.json()["id_token"]


def sealed_state(secret: str, url: str, nonce: str, verifier: str | None,
                 binding: str) -> str:
    """A login state as src/oidc.rs LoginState encodes it (format 1: return URL, nonce,
    optional PKCE verifier, binding, unix time), sealed with `secret` for "login-state"."""
    def s(v: str) -> bytes:
        return struct.pack("<I", len(v.encode())) + v.encode()
    opt = b"\x00" if verifier is None else b"\x01" + s(verifier)
    pt = b"\x01" + s(url) + s(nonce) + opt + s(binding) + struct.pack("<Q", int(time.time()))
    return SC.seal(secret, pt, purpose="login-state")


def forged_login(host: O.RpHost, idp: I.IdpProc, b: B.Browser, url: str) -> H.Response:
    """A login whose state, sealed here, returns to `url`, through the real provider with
    the matching nonce (and PKCE verifier), delivered with the matching login cookie."""
    nonce, binding = "n-" + os.urandom(8).hex(), "b-" + os.urandom(8).hex()
    verifier, challenge = I.pkce_pair()
    if host.flow == "code":
        state = sealed_state(host.secret, url, nonce, verifier, binding)
        auth = idp.authorize_url("barbican-code", state=state, nonce=nonce,
                                 code_challenge=challenge)
    else:
        state = sealed_state(host.secret, url, nonce, None, binding)
        auth = idp.authorize_url("barbican-implicit", state=state, nonce=nonce)
    return O.callback(host, O.provider_answer(b, auth), f"{O.LOGIN_COOKIE}={binding}")


@pytest.mark.parametrize("name", ["envoy", "traefik"])
def test_a_state_sealed_with_the_secret_still_cannot_leave_the_domains(hosts,
                                                                        provider_browser,
                                                                        idp, name):
    host = hosts[name]
    for url in (f"https://{EVIL}/", f"//{EVIL}/", f"http://app.test@{EVIL}/",
                "javascript:alert(1)", f"http://app.test/\\{EVIL}"):
        r = forged_login(host, idp, provider_browser, url)
        accepted = O.session_from(r) is not None or off_site(r.header("Location"), "127.0.0.1")
        tally(host, f"sealed state naming {url}", accepted)
        assert not accepted and r.status == 400, (url, r)
    # Control: the same forgery naming app.test logs in (so the refusals above are the
    # return-URL check, not a broken forgery).
    r = forged_login(host, idp, provider_browser, f"{APP}/ok")
    assert r.status == 302 and r.header("Location") == f"{APP}/ok" and O.session_from(r), r
