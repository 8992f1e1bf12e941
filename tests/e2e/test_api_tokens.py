"""API routes with bearer tokens: Barbican in Envoy verifies RFC 9068 JWT access tokens
(ES256, RS256, EdDSA) against the IdP's JWKS and checks opaque tokens by RFC 7662
introspection, against a real OpenID provider (servers/oidc: npm `oidc-provider`).

- TestIdp: the test IdP itself (no wasm needed): discovery, JWT access tokens, introspection,
  revocation, key rotation, test controls.
- TestJwt / TestIntrospection / TestAllowCidrs / TestKeyRotation: Envoy + Barbican + the IdP +
  the echo upstream, configured by api_config() below (rotation last: it changes the IdP's
  keys). These fail, with Envoy's log, until Barbican's API-token support is built.

Timing knobs (api_config): jwks refresh_s 2, clock_skew_s 5, introspection ttl_s 2,
negative_ttl_s 1. Every wait is a bounded poll.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
import uuid

import pytest

import harness as H
import idp as I

REFRESH_S = 2
CLOCK_SKEW_S = 5
INTRO_TTL_S = 2
INTRO_NEG_TTL_S = 1


def api_config(idp: I.IdpProc) -> dict:
    """Barbican's API-route configuration, with the endpoints the IdP's discovery names."""
    disc = idp.discovery()
    return {
        "jwt": {"providers": [{
            "name": "test", "issuer": disc["issuer"],
            "audiences": [I.RES_ES, I.RES_RS, I.RES_ED],
            "algorithms": ["RS256", "ES256", "EdDSA"],
            "jwks": {"uri": disc["jwks_uri"], "cluster": "idp", "refresh_s": REFRESH_S},
            "clock_skew_s": CLOCK_SKEW_S, "groups_claim": "groups"}]},
        "introspection": {"cluster": "idp", "path": idp.endpoint_path("introspection_endpoint"),
                          "client_id": I.INTROSPECTOR, "client_secret": I.secret(I.INTROSPECTOR),
                          "auth": "basic", "ttl_s": INTRO_TTL_S,
                          "negative_ttl_s": INTRO_NEG_TTL_S},
        "routes": [
            {"match": {"path_prefix": "/api/read/"}, "policy": "api", "accept": ["jwt"],
             "require_scopes": ["read"]},
            {"match": {"path_prefix": "/api/write/"}, "policy": "api", "accept": ["jwt"],
             "require_scopes": ["write"]},
            {"match": {"path_prefix": "/api/admin/"}, "policy": "api", "accept": ["jwt"],
             "require_groups": ["admins"]},
            {"match": {"path_prefix": "/api/opaque/"}, "policy": "api",
             "accept": ["introspection"], "require_scopes": ["read"]},
            {"match": {"path_prefix": "/api/home/"}, "policy": "api", "accept": ["jwt"],
             "allow_cidrs": ["127.0.0.0/8"]},
            {"match": {"path_prefix": "/"}, "policy": "deny"},
        ],
        "default_policy": "deny",
    }


# ---------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bare_idp():
    """An IdP of its own for TestIdp (which rotates its keys)."""
    p = I.start_idp()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def cold_api(wasm, idp, upstream):
    """Envoy + Barbican (api_config) with clusters `idp` and `upstream`, no request sent yet.
    harness.start_envoy always routes /outpost.goauthentik.io/ to a cluster named `outpost`,
    which must exist: it points at the upstream here (Barbican's `/` deny rule answers that
    path anyway)."""
    env = H.start_envoy(api_config(idp), wasm,
                        clusters={"idp": idp.port, "upstream": upstream.port,
                                  "outpost": upstream.port})
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="module")
def api(cold_api, idp):
    """The same Envoy once a valid JWT has passed (JWKS loaded), so that a cold-start problem
    fails test_first_request_waits_for_the_jwks alone."""
    tok = idp.token(I.RES_ES, "read")
    ok, r, elapsed = poll(lambda: status_is(cold_api, "/api/read/warm-up", tok, 200), 10)
    if not ok:
        pytest.fail(f"a valid JWT is still refused {elapsed:.1f}s after start: {r}",
                    pytrace=False)
    return cold_api


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

JSON_ACCEPT = ("Accept", "application/json")


def bearer(token: str, scheme: str = "Bearer") -> list[tuple[str, str]]:
    return [JSON_ACCEPT, ("Authorization", f"{scheme} {token}")]


def www_auth(r: H.Response) -> str:
    return r.header("WWW-Authenticate") or ""


def is_bearer_challenge(value: str) -> bool:
    return re.match(r"(?i)^bearer(\s|,|$)", value.strip()) is not None


def has_error(value: str, code: str) -> bool:
    return re.search(r'(?i)\berror\s*=\s*"?' + re.escape(code) + r'"?', value) is not None


def assert_401_invalid_token(r: H.Response, what: str = "") -> None:
    assert r.status == 401, (what, r)
    assert not r.from_upstream, (what, r)
    assert r.header("Location") is None, (what, r)
    ch = www_auth(r)
    assert is_bearer_challenge(ch) and has_error(ch, "invalid_token"), (what, ch, r)


def assert_403_insufficient_scope(r: H.Response, what: str = "") -> None:
    assert r.status == 403, (what, r)
    assert not r.from_upstream, (what, r)
    ch = www_auth(r)
    assert is_bearer_challenge(ch) and has_error(ch, "insufficient_scope"), (what, ch, r)


def assert_identity(r: H.Response, sub: str, groups: str | None) -> None:
    assert r.status == 200 and r.from_upstream, r
    assert r.upstream_header("x-authentik-uid") == [sub], r.upstream["headers"]
    assert r.upstream_header("x-authentik-username") == [sub], r.upstream["headers"]
    if groups is None:
        assert r.upstream_header("x-authentik-groups") in ([], [""]), r.upstream["headers"]
    else:
        assert r.upstream_header("x-authentik-groups") == [groups], r.upstream["headers"]
    assert H.spoofed_leaks(r.upstream["headers"]) == [], r.upstream["headers"]


def tamper_payload(token: str, **changes) -> str:
    h, p, s = token.split(".")
    claims = I.b64url_json(p)
    claims.update(changes)
    return ".".join([h, I.b64url(json.dumps(claims)), s])


def tamper_signature(token: str) -> str:
    h, p, s = token.split(".")
    i = len(s) // 2  # a middle character: every bit of it is signature, not padding
    s = s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]
    return ".".join([h, p, s])


def status_is(env, path: str, token: str, want: int):
    """For poll(): (response status == want, response)."""
    r = H.get(env.port, path, headers=bearer(token))
    return r.status == want, r


def poll(pred, timeout: float, interval: float = 0.2):
    """pred() -> (done, value); returns (done, value, elapsed) at the first done or timeout."""
    t0 = time.monotonic()
    done, value = pred()
    while not done and time.monotonic() - t0 < timeout:
        time.sleep(interval)
        done, value = pred()
    return done, value, time.monotonic() - t0


# ---------------------------------------------------------------------------------------
# the test IdP itself (needs no wasm)
# ---------------------------------------------------------------------------------------

class TestIdp:
    def test_discovery_names_its_own_endpoints(self, bare_idp):
        d = bare_idp.discovery(fresh=True)
        assert d["issuer"] == bare_idp.base == f"http://127.0.0.1:{bare_idp.port}"
        assert d["jwks_uri"] == bare_idp.base + "/jwks"
        assert d["token_endpoint"] == bare_idp.base + "/token"
        assert d["introspection_endpoint"] == bare_idp.base + "/token/introspection"
        assert d["revocation_endpoint"] == bare_idp.base + "/token/revocation"
        assert "client_credentials" in d["grant_types_supported"]
        # whatever authority the caller uses (Envoy may send the cluster name)
        other = bare_idp.http("GET", "/.well-known/openid-configuration",
                              headers={"Host": "idp"}).json()
        assert other["jwks_uri"] == d["jwks_uri"] and other["issuer"] == d["issuer"]
        assert {"client_secret_basic", "client_secret_post"} <= set(
            d["token_endpoint_auth_methods_supported"])

    def test_jwks_has_rsa_p256_and_ed25519_public_keys(self, bare_idp):
        keys = bare_idp.jwks()["keys"]
        kinds = {(k["kty"], k.get("crv"), k["alg"]) for k in keys}
        assert kinds == {("RSA", None, "RS256"), ("EC", "P-256", "ES256"),
                         ("OKP", "Ed25519", "EdDSA")}
        for k in keys:
            assert k["use"] == "sig" and k["kid"]
            assert not {"d", "p", "q", "dp", "dq", "qi"} & set(k), k

    @pytest.mark.parametrize("resource,alg", sorted(I.JWT_RESOURCES.items()))
    def test_jwt_access_tokens_per_resource(self, bare_idp, resource, alg):
        tok = bare_idp.token(resource, "read write", "api-admin")
        h, c = I.jwt_header(tok), I.jwt_payload(tok)
        assert h["typ"] == "at+jwt" and h["alg"] == alg, h
        assert h["kid"] in {k["kid"] for k in bare_idp.jwks()["keys"]}
        assert c["iss"] == bare_idp.base and c["aud"] == resource
        assert c["sub"] == c["client_id"] == c["username"] == "api-admin"
        assert c["scope"] == "read write" and c["groups"] == ["admins", "users"]
        assert c["exp"] - c["iat"] == 600 and c["jti"]
        [v] = I.verify_jwts([tok], bare_idp.jwks())
        assert v["ok"], v

    def test_both_client_auth_methods_and_groups_per_client(self, bare_idp):
        r = bare_idp.token_response(I.RES_ES, "read", "api-reader", auth="post")
        assert r.status == 200, r
        c = I.jwt_payload(r.json()["access_token"])
        assert c["sub"] == "api-reader" and c["groups"] == ["users"] and c["scope"] == "read"
        c = I.jwt_payload(bare_idp.token(I.RES_RS, "read", "api-nogroups", auth="basic"))
        assert c["sub"] == "api-nogroups" and "groups" not in c

    def test_scopes_are_filtered_by_the_resource(self, bare_idp):
        assert I.jwt_payload(bare_idp.token(I.RES_ES, "write admin"))["scope"] == "write"
        assert "scope" not in I.jwt_payload(bare_idp.token(I.RES_ES, None))

    def test_bad_client_and_unknown_resource_are_refused(self, bare_idp):
        r = bare_idp.token_response(I.RES_ES, "read", "api-admin", client_secret="wrong")
        assert r.status == 401 and r.json()["error"] == "invalid_client", r
        r = bare_idp.token_response("urn:barbican:nope", "read")
        assert r.status == 400 and r.json()["error"] == "invalid_target", r
        r = bare_idp.token_response(I.RES_ES, "read", "barbican-introspector")
        assert r.status == 400 and "grant type is not allowed" in r.json()["error_description"], r

    def test_test_token_endpoint(self, bare_idp):
        for client in ("api-admin", "api-reader"):
            q = urllib.parse.urlencode({"resource": I.RES_ED, "scope": "read", "client": client})
            r = bare_idp.http("POST", "/__test/token?" + q)
            assert r.status == 200, r
            assert I.jwt_payload(r.json()["access_token"])["sub"] == client

    def test_opaque_token_introspection_and_revocation(self, bare_idp):
        tok = bare_idp.token(I.RES_OPAQUE, "read", "api-admin")
        assert "." not in tok and len(tok) >= 32
        before = bare_idp.count("introspection")
        info = bare_idp.introspect(tok)
        assert info["active"] is True
        assert info["sub"] == info["username"] == info["client_id"] == "api-admin"
        assert info["scope"] == "read" and info["groups"] == ["admins", "users"]
        assert info["aud"] == I.RES_OPAQUE and info["iss"] == bare_idp.base
        assert info["exp"] - info["iat"] == 600
        st = bare_idp.stats()
        assert st["introspection"] == before + 1
        assert st["introspection_requests"][-1]["auth"] == "basic"
        assert st["introspection_requests"][-1]["client_id"] == I.INTROSPECTOR
        assert bare_idp.introspect(tok, "barbican-introspector-post")["active"] is True
        r = bare_idp.introspect_response(tok, I.INTROSPECTOR, auth="basic")
        assert r.status == 200
        bad = bare_idp.http("POST", bare_idp.endpoint_path("introspection_endpoint"),
                            form={"token": tok},
                            headers={"Authorization": I.basic(I.INTROSPECTOR, "wrong")})
        assert bad.status == 401, bad
        assert bare_idp.introspect("never-issued-" + uuid.uuid4().hex) == {"active": False}
        assert bare_idp.introspect(tok, "api-reader") == {"active": False}  # not its token
        bare_idp.revoke(tok, "api-admin")
        assert bare_idp.introspect(tok) == {"active": False}

    def test_jwt_access_tokens_cannot_be_introspected(self, bare_idp):
        r = bare_idp.introspect_response(bare_idp.token(I.RES_ES, "read"))
        assert r.status == 400 and r.json()["error"] == "unsupported_token_type", r

    def test_token_lifetime_header(self, bare_idp):
        c = I.jwt_payload(bare_idp.token(I.RES_ES, "read", ttl=7))
        assert c["exp"] - c["iat"] == 7
        info = bare_idp.introspect(bare_idp.token(I.RES_OPAQUE, "read", ttl=7))
        assert info["exp"] - info["iat"] == 7

    def test_store_keeps_more_than_1000_tokens(self, bare_idp):
        """The default memory adapter would have dropped the first of 1100 tokens."""
        conn = http.client.HTTPConnection("127.0.0.1", bare_idp.port, timeout=10)
        form = urllib.parse.urlencode({"grant_type": "client_credentials",
                                       "resource": I.RES_OPAQUE, "scope": "read"})
        headers = {"Authorization": I.basic("api-admin"),
                   "Content-Type": "application/x-www-form-urlencoded"}
        first = None
        try:
            for _ in range(1100):
                conn.request("POST", "/token", body=form, headers=headers)
                r = conn.getresponse()
                body = r.read()
                assert r.status == 200, body
                first = first or json.loads(body)["access_token"]
        finally:
            conn.close()
        st = bare_idp.stats()["store"]
        assert st["size"] >= 1100 and st["evicted"] == 0 and st["max"] >= 100000, st
        assert bare_idp.introspect(first)["active"] is True

    def test_stats_count_jwks_requests(self, bare_idp):
        before = bare_idp.count("jwks")
        for _ in range(3):
            bare_idp.jwks()
        assert bare_idp.count("jwks") == before + 3
        assert len(bare_idp.stats()["jwks_times_ms"]) >= 3

    def test_signing_helper_and_foreign_keys(self, bare_idp):
        jwks = bare_idp.jwks()
        c = bare_idp.claims(I.RES_ES)
        good = bare_idp.sign(c, alg="ES256")
        foreign = bare_idp.sign(c, alg="ES256", signer="foreign")
        foreign_same_kid = bare_idp.sign(c, alg="ES256", signer="foreign",
                                         header={"kid": I.jwt_header(good)["kid"]})
        rs = bare_idp.sign(bare_idp.claims(I.RES_RS), alg="RS256")
        ed = bare_idp.sign(bare_idp.claims(I.RES_ED), alg="EdDSA")
        hs = bare_idp.sign(c, alg="HS256", signer="rsa-public-pem")
        none = bare_idp.sign(c, alg="none")
        res = I.verify_jwts([good, foreign, foreign_same_kid, rs, ed, hs, none], jwks)
        assert [v["ok"] for v in res] == [True, False, False, True, True, False, False], res
        assert I.jwt_header(foreign)["kid"] not in {k["kid"] for k in jwks["keys"]}
        assert I.jwt_header(hs)["alg"] == "HS256" and none.endswith(".")

    def test_groups_and_modes_can_be_changed(self, bare_idp):
        bare_idp.set_groups("api-nogroups", ["ops"])
        try:
            assert I.jwt_payload(bare_idp.token(I.RES_ES, "read", "api-nogroups"))["groups"] \
                == ["ops"]
        finally:
            bare_idp.set_groups("api-nogroups", None)
        assert "groups" not in I.jwt_payload(bare_idp.token(I.RES_ES, "read", "api-nogroups"))
        try:
            bare_idp.set_mode(jwks="error")
            assert bare_idp.http("GET", "/jwks").status == 500
            bare_idp.set_mode(jwks="garbage")
            r = bare_idp.http("GET", "/jwks")
            assert r.status == 200
            with pytest.raises(ValueError):
                json.loads(r.body)
            bare_idp.set_mode(introspection="error")
            assert bare_idp.introspect_response("x").status == 500
        finally:
            bare_idp.set_mode(jwks="ok", introspection="ok")
        assert bare_idp.http("GET", "/jwks").status == 200

    def test_rotation_then_retirement(self, bare_idp):
        """Last in this class: it changes bare_idp's keys."""
        old = bare_idp.token(I.RES_ES, "read")
        old_kids = {k["kid"] for k in bare_idp.jwks()["keys"]}
        ks = bare_idp.rotate()
        assert ks["current"] == 1
        rotated = bare_idp.jwks()
        new_kids = {k["kid"] for k in rotated["keys"]}
        assert old_kids < new_kids and len(new_kids) == 6
        new = bare_idp.token(I.RES_ES, "read")
        assert I.jwt_header(new)["kid"] in new_kids - old_kids
        assert [v["ok"] for v in I.verify_jwts([old, new], rotated)] == [True, True]
        bare_idp.retire()
        retired = bare_idp.jwks()
        assert {k["kid"] for k in retired["keys"]} == new_kids - old_kids
        old_fresh = bare_idp.sign(bare_idp.claims(I.RES_ES), signer="g0")
        assert [v["ok"] for v in I.verify_jwts([old, new, old_fresh], retired)] == \
            [False, True, False]


# ---------------------------------------------------------------------------------------
# Barbican: JWT access tokens
# ---------------------------------------------------------------------------------------

class TestJwt:
    def test_first_request_waits_for_the_jwks(self, cold_api, idp):
        """The module's first request to Barbican (keep it first): the key set isn't fetched
        yet, so the request waits for the JWKS callout (no 503 on a cold start)."""
        tok = idp.token(I.RES_ES, "read", "api-admin")
        r = H.get(cold_api.port, "/api/read/first", headers=bearer(tok))
        assert r.status == 200 and r.from_upstream, r
        assert idp.count("jwks") >= 1

    @pytest.mark.parametrize("resource", [I.RES_ES, I.RES_RS, I.RES_ED])
    def test_valid_jwt_reaches_upstream_with_identity(self, api, idp, upstream, resource):
        tok = idp.token(resource, "read", "api-admin")
        r = H.get(api.port, "/api/read/items?x=1", headers=bearer(tok) + H.SPOOFED_HEADERS)
        assert_identity(r, "api-admin", "admins|users")
        assert r.upstream["path"] == "/api/read/items?x=1"

    def test_client_secret_post_client_and_its_groups(self, api, idp):
        tok = idp.token(I.RES_RS, "read", "api-reader")
        r = H.get(api.port, "/api/read/x", headers=bearer(tok) + H.SPOOFED_HEADERS)
        assert_identity(r, "api-reader", "users")

    def test_token_without_groups_claim(self, api, idp):
        tok = idp.token(I.RES_ES, "read", "api-nogroups")
        r = H.get(api.port, "/api/read/x", headers=bearer(tok) + H.SPOOFED_HEADERS)
        assert_identity(r, "api-nogroups", None)

    def test_bearer_scheme_is_case_insensitive(self, api, idp):
        tok = idp.token(I.RES_ES, "read")
        assert H.get(api.port, "/api/read/x", headers=bearer(tok, "bearer")).status == 200

    def test_scopes(self, api, idp, upstream):
        read = idp.token(I.RES_ES, "read")
        write = idp.token(I.RES_RS, "write")
        both = idp.token(I.RES_ED, "read write")
        noscope = idp.token(I.RES_ES, None)
        assert "scope" not in I.jwt_payload(noscope)
        seen = upstream.requests_seen()
        assert_403_insufficient_scope(H.get(api.port, "/api/write/x", headers=bearer(read)),
                                      "read token on write route")
        assert_403_insufficient_scope(H.get(api.port, "/api/read/x", headers=bearer(write)),
                                      "write token on read route")
        assert_403_insufficient_scope(H.get(api.port, "/api/read/x", headers=bearer(noscope)),
                                      "token without scope")
        assert_403_insufficient_scope(
            H.request(api.port, "/api/write/x", "POST", headers=bearer(read), body=b"{}"),
            "POST with a read token")
        assert upstream.requests_seen() == seen
        for path, tok in (("/api/write/x", write), ("/api/write/y", both),
                          ("/api/read/y", both)):
            r = H.get(api.port, path, headers=bearer(tok))
            assert r.status == 200 and r.from_upstream, (path, r)

    def test_groups_route(self, api, idp, upstream):
        admin = idp.token(I.RES_ES, "read", "api-admin")
        r = H.get(api.port, "/api/admin/panel", headers=bearer(admin))
        assert r.status == 200 and r.from_upstream, r
        seen = upstream.requests_seen()
        for client in ("api-reader", "api-nogroups"):
            tok = idp.token(I.RES_ES, "read write", client)
            r = H.get(api.port, "/api/admin/panel",
                      headers=bearer(tok) + [("X-authentik-groups", "admins")])
            assert r.status == 403 and not r.from_upstream, (client, r)
        assert upstream.requests_seen() == seen

    def test_no_token_is_401_bearer_never_a_redirect(self, api, upstream):
        seen = upstream.requests_seen()
        for path in ("/api/read/x", "/api/write/x", "/api/admin/x", "/api/opaque/x"):
            for method, headers in (("GET", [JSON_ACCEPT]), ("GET", H.browser_headers()),
                                    ("POST", [JSON_ACCEPT]), ("GET", H.SPOOFED_HEADERS)):
                r = H.request(api.port, path, method, headers=headers,
                              body=b"{}" if method == "POST" else None)
                assert r.status == 401, (path, method, r)
                assert r.header("Location") is None, (path, r)
                ch = www_auth(r)
                assert is_bearer_challenge(ch), (path, ch)
                assert "error=" not in ch.lower(), ("no credentials: no error code", ch)
        assert upstream.requests_seen() == seen

    def test_bad_tokens_are_401_invalid_token(self, api, idp, upstream):
        now = int(time.time())
        good = idp.token(I.RES_ES, "read")
        assert H.get(api.port, "/api/read/x", headers=bearer(good)).status == 200
        es_kid = I.jwt_header(good)["kid"]
        rs_kid = I.jwt_header(idp.token(I.RES_RS, "read"))["kid"]
        c = idp.claims(I.RES_ES)
        cases = {
            "garbage": "not-a-jwt",
            "three garbage parts": "a.b.c",
            "empty signature": good.rsplit(".", 1)[0] + ".",
            "tampered payload": tamper_payload(good, sub="root", groups=["admins"]),
            "tampered signature": tamper_signature(good),
            "expired": idp.sign(idp.claims(I.RES_ES, now=now - 700, ttl=600)),
            "not yet valid": idp.sign(idp.claims(I.RES_ES, nbf=now + 120)),
            "no exp": idp.sign(idp.claims(I.RES_ES, exp=None)),
            "other issuer, our key": idp.sign(idp.claims(I.RES_ES, iss="https://evil.test")),
            "audience not accepted": idp.token(I.RES_OTHER, "read"),
            "foreign key": idp.sign(c, signer="foreign"),
            "foreign key, our kid": idp.sign(c, signer="foreign", header={"kid": es_kid}),
            "foreign EdDSA key": idp.sign(idp.claims(I.RES_ED), alg="EdDSA", signer="foreign"),
            "alg none": idp.sign(c, alg="none"),
            "alg none, our kid": idp.sign(c, alg="none", header={"kid": es_kid}),
            "HS256 keyed with the RSA public key": idp.sign(c, alg="HS256",
                                                            signer="rsa-public-pem"),
            "RS256 signature under the EC key's kid": idp.sign(
                idp.claims(I.RES_RS), alg="RS256", header={"kid": es_kid}),
            "ES256 header on an RSA kid": idp.sign(c, alg="ES256", header={"kid": rs_kid}),
        }
        seen = upstream.requests_seen()
        for what, tok in cases.items():
            for path in ("/api/read/x", "/api/admin/x"):
                assert_401_invalid_token(H.get(api.port, path, headers=bearer(tok)), what)
        assert upstream.requests_seen() == seen
        # not a Bearer credential at all: 401 with the Bearer challenge
        for value in (I.basic("api-admin"), "Bearer", good):
            r = H.get(api.port, "/api/read/x", headers=[JSON_ACCEPT, ("Authorization", value)])
            assert r.status == 401 and is_bearer_challenge(www_auth(r)), (value[:20], r)

    def test_expiry_honours_clock_skew(self, api, idp):
        now = int(time.time())
        within = idp.sign(idp.claims(I.RES_ES, iat=now - 60, exp=now - 2))
        r = H.get(api.port, "/api/read/x", headers=bearer(within))
        assert r.status == 200, ("exp 2 s ago, clock_skew_s 5", r)
        beyond = idp.sign(idp.claims(I.RES_ES, iat=now - 60, exp=now - 30))
        assert_401_invalid_token(H.get(api.port, "/api/read/x", headers=bearer(beyond)))

    def test_token_without_kid_is_matched_by_alg(self, api, idp):
        tok = idp.sign(idp.claims(I.RES_ES), header={"kid": None})
        assert "kid" not in I.jwt_header(tok)
        r = H.get(api.port, "/api/read/x", headers=bearer(tok))
        assert r.status == 200 and r.from_upstream, r

    def test_jwks_is_not_fetched_per_request(self, api, idp):
        tok = idp.token(I.RES_ES, "read")
        assert H.get(api.port, "/api/read/warm", headers=bearer(tok)).status == 200
        others = [idp.token(res, "read", cl) for res in (I.RES_ES, I.RES_RS, I.RES_ED)
                  for cl in ("api-admin", "api-reader")]
        j0, t0 = idp.count("jwks"), time.monotonic()
        with H.KeepAliveClient(api.port) as c:
            for i in range(20):
                r = c.request(f"/api/read/{i}", headers=bearer(tok))
                assert r.status == 200, r
            for i, t in enumerate(others):
                r = c.request(f"/api/read/o{i}", headers=bearer(t))
                assert r.status == 200, r
        for i in range(3):
            assert H.get(api.port, f"/api/read/f{i}", headers=bearer(tok)).status == 200
        fetched, elapsed = idp.count("jwks") - j0, time.monotonic() - t0
        assert fetched <= 1 + int(elapsed / REFRESH_S), (fetched, elapsed)

    def test_unknown_kids_do_not_hammer_the_jwks_endpoint(self, api, idp):
        j0, t0 = idp.count("jwks"), time.monotonic()
        for i in range(20):
            tok = idp.sign(idp.claims(I.RES_ES), signer="foreign",
                           header={"kid": "unknown-" + uuid.uuid4().hex})
            assert_401_invalid_token(H.get(api.port, f"/api/read/{i}", headers=bearer(tok)))
        fetched, elapsed = idp.count("jwks") - j0, time.monotonic() - t0
        assert fetched <= 2 + int(elapsed), (
            f"{fetched} JWKS fetches for 20 unknown kids in {elapsed:.1f}s")


# ---------------------------------------------------------------------------------------
# Barbican: opaque tokens by RFC 7662 introspection
# ---------------------------------------------------------------------------------------

class TestIntrospection:
    def test_opaque_token_reaches_upstream_with_identity(self, api, idp):
        tok = idp.token(I.RES_OPAQUE, "read", "api-admin")
        r = H.get(api.port, "/api/opaque/items", headers=bearer(tok) + H.SPOOFED_HEADERS)
        assert_identity(r, "api-admin", "admins|users")
        last = idp.stats()["introspection_requests"][-1]
        assert last["auth"] == "basic" and last["client_id"] == I.INTROSPECTOR, last

    def test_introspection_answers_are_cached(self, api, idp):
        tok = idp.token(I.RES_OPAQUE, "read", "api-reader")
        n0, t0 = idp.count("introspection"), time.monotonic()
        with H.KeepAliveClient(api.port) as c:
            for i in range(15):
                r = c.request(f"/api/opaque/{i}", headers=bearer(tok))
                assert r.status == 200 and r.from_upstream, r
        for i in range(5):
            assert H.get(api.port, f"/api/opaque/f{i}", headers=bearer(tok)).status == 200
        calls, elapsed = idp.count("introspection") - n0, time.monotonic() - t0
        assert calls == 1 or (elapsed >= INTRO_TTL_S and calls <= 1 + elapsed / INTRO_TTL_S), (
            calls, elapsed)

    def test_insufficient_scope(self, api, idp, upstream):
        tok = idp.token(I.RES_OPAQUE, "write")
        seen = upstream.requests_seen()
        assert_403_insufficient_scope(H.get(api.port, "/api/opaque/x", headers=bearer(tok)))
        assert upstream.requests_seen() == seen

    def test_unknown_token_is_401_and_negatively_cached(self, api, idp, upstream):
        tok = "never-issued-" + uuid.uuid4().hex
        seen = upstream.requests_seen()
        n0, t0 = idp.count("introspection"), time.monotonic()
        for i in range(6):
            assert_401_invalid_token(H.get(api.port, f"/api/opaque/{i}", headers=bearer(tok)))
        calls, elapsed = idp.count("introspection") - n0, time.monotonic() - t0
        assert 1 <= calls <= 1 + int(elapsed / INTRO_NEG_TTL_S), (calls, elapsed)
        assert upstream.requests_seen() == seen

    def test_revoked_token_is_refused_once_the_ttl_passed(self, api, idp):
        tok = idp.token(I.RES_OPAQUE, "read", "api-admin")
        assert H.get(api.port, "/api/opaque/x", headers=bearer(tok)).status == 200
        idp.revoke(tok, "api-admin")
        assert idp.introspect(tok) == {"active": False}
        done, r, elapsed = poll(lambda: status_is(api, "/api/opaque/x", tok, 401),
                                timeout=INTRO_TTL_S + INTRO_NEG_TTL_S + 4)
        assert done, f"revoked token still accepted after {elapsed:.1f}s: {r}"
        assert_401_invalid_token(r)
        assert elapsed <= INTRO_TTL_S + 2, elapsed

    def test_expired_opaque_token_is_refused(self, api, idp):
        tok = idp.token(I.RES_OPAQUE, "read", ttl=1)
        exp = idp.introspect(tok)["exp"]
        time.sleep(max(0.0, exp - time.time() + 0.3))
        assert_401_invalid_token(H.get(api.port, "/api/opaque/x", headers=bearer(tok)))

    def test_opaque_token_on_a_jwt_route_is_not_introspected(self, api, idp):
        tok = idp.token(I.RES_OPAQUE, "read")
        n0 = idp.count("introspection")
        assert_401_invalid_token(H.get(api.port, "/api/read/x", headers=bearer(tok)))
        assert idp.count("introspection") == n0

    def test_jwt_on_the_introspection_route_never_reaches_upstream(self, api, idp, upstream):
        """oidc-provider answers 400 unsupported_token_type when asked about a JWT."""
        tok = idp.token(I.RES_ES, "read")
        seen = upstream.requests_seen()
        r = H.get(api.port, "/api/opaque/x", headers=bearer(tok))
        assert r.status != 200 and not r.from_upstream, r
        assert upstream.requests_seen() == seen


# ---------------------------------------------------------------------------------------
# Barbican: allow_cidrs and the deny fallback
# ---------------------------------------------------------------------------------------

class TestAllowCidrs:
    def test_home_network_passes_without_token(self, api):
        r = H.get(api.port, "/api/home/lights", headers=[JSON_ACCEPT] + H.SPOOFED_HEADERS)
        assert r.status == 200 and r.from_upstream, r
        assert H.spoofed_leaks(r.upstream["headers"]) == [], r.upstream["headers"]
        assert r.upstream_header("x-authentik-username") in ([], [""]), r.upstream["headers"]

    def test_everything_else_still_needs_a_token(self, api, upstream):
        seen = upstream.requests_seen()
        for path in ("/api/read/x", "/api/write/x", "/api/admin/x", "/api/opaque/x"):
            r = H.get(api.port, path, headers=[JSON_ACCEPT])
            assert r.status == 401 and is_bearer_challenge(www_auth(r)), (path, r)
        for path in ("/", "/api/homeless", "/api/other/x", "/outpost.goauthentik.io/ping"):
            r = H.get(api.port, path, headers=[JSON_ACCEPT])
            assert r.status == 403 and not r.from_upstream, (path, r)
        assert upstream.requests_seen() == seen


# ---------------------------------------------------------------------------------------
# Barbican: JWKS rotation without an Envoy restart (last: it changes the IdP's keys)
# ---------------------------------------------------------------------------------------

class TestKeyRotation:
    def test_rotate_then_retire(self, api, idp):
        pid = api.pid

        def status(tok: str, path: str = "/api/read/rot") -> int:
            return H.get(api.port, path, headers=bearer(tok)).status

        old = {res: idp.token(res, "read") for res in (I.RES_ES, I.RES_RS, I.RES_ED)}
        for res, tok in old.items():
            assert status(tok) == 200, res
        keys = idp.rotate()
        assert keys["current"] == 1
        new = {res: idp.token(res, "read") for res in old}
        for res, tok in new.items():
            assert I.jwt_header(tok)["kid"].endswith("-g1"), I.jwt_header(tok)
            done, r, elapsed = poll(lambda: status_is(api, "/api/read/rot", tok, 200), 10)
            assert done, f"{res}: token from the new key refused for {elapsed:.1f}s: {r}"
        # old keys are still published: old tokens, and fresh ones from the old keys, pass
        for res, tok in old.items():
            assert status(tok) == 200, res
        fresh_old = idp.sign(idp.claims(I.RES_ES), signer="g0")
        assert status(fresh_old) == 200

        idp.retire()
        never_seen_old = idp.sign(idp.claims(I.RES_RS), alg="RS256", signer="g0")
        j0 = idp.count("jwks")

        def all_old_refused():
            sts = [status(t) for t in [*old.values(), fresh_old, never_seen_old]]
            return all(s == 401 for s in sts), sts

        done, sts, elapsed = poll(all_old_refused, timeout=10, interval=0.25)
        assert done, f"tokens from retired keys still accepted after {elapsed:.1f}s: {sts}"
        fetched = idp.count("jwks") - j0
        assert fetched <= 3 + int(elapsed), (fetched, elapsed)
        for res, tok in new.items():
            assert status(tok) == 200, res
        r = H.get(api.port, "/api/read/rot", headers=bearer(old[I.RES_ES]))
        assert_401_invalid_token(r)
        assert api.alive() and api.pid == pid
