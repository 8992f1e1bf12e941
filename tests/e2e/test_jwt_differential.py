"""Differential test: one token corpus through Envoy's native `jwt_authn` filter and through
Barbican, both in real Envoys in front of the same upstream; the same accept/reject verdict
for every token, except the deliberate differences listed in DIFFERENCES (each with its
reason, and Barbican's exact answer asserted).

Set-up (module-scoped, loopback, everything stopped at the end):
- the test IdP (servers/oidc, npm `oidc-provider`): RS256, ES256 and EdDSA keys at its jwks_uri;
- a "local" issuer whose keys this module holds (Python `cryptography`), published inline to
  both filters: it signs what the IdP cannot (raw JSON with duplicate keys, PS256, ES384,
  DER or high-S ECDSA signatures, a 1024-bit RSA key);
- Envoy A: Barbican, one catch-all `api` route (`accept: ["jwt"]`, no scope), providers
  `idp` (jwks uri through cluster `idp`) and `local` (inline JWKS);
- Envoy B: jwt_authn, providers `idp` (remote_jwks through cluster `idp`) and `local`
  (local_jwks), rule `/` requires any of them, `forward: true`, token only from
  `Authorization: Bearer` like Barbican. One more rule, DEFAULTS_PREFIX, requires `idp`'s
  twin with jwt_authn's default token locations (which add `?access_token=`).
Same issuers, audiences and clock skew (CLOCK_SKEW_S) on both.

Differences that look like Barbican bugs are in KNOWN_BUGS: those cases expect jwt_authn's
verdict from both and are xfail(strict=True) until fixed.

Verdicts: "accept" = a 2xx from the upstream; "reject" = 401/403 from the filter; anything
else is reported as "status <n>" (and fails unless documented).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)

import harness as H
import idp as I
import jwt_authn as J
from test_api_tokens import tamper_payload, tamper_signature

CLOCK_SKEW_S = 5
LOCAL_ISS = "https://local.differential.test"
LOCAL_AUD = "urn:barbican:differential"
IDP_AUDS = [I.RES_ES, I.RES_RS, I.RES_ED]
ALGORITHMS = ["RS256", "ES256", "EdDSA"]
ACCEPT, REJECT = "accept", "reject"
# jwt_authn only: under this prefix its `idp` twin keeps jwt_authn's default token locations
# (no from_headers/from_params: `Authorization: Bearer` and `?access_token=`). Barbican's
# catch-all route treats it like any other path.
DEFAULTS_PREFIX = "/jwt-authn-defaults/"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


# ---------------------------------------------------------------------------------------
# the local issuer's keys (never the IdP's): raw JWS construction
# ---------------------------------------------------------------------------------------

def _b64u_int(n: int, size: int | None = None) -> str:
    size = size or (n.bit_length() + 7) // 8
    return I.b64url(n.to_bytes(size, "big"))


class LocalKeys:
    def __init__(self) -> None:
        self.es256 = ec.generate_private_key(ec.SECP256R1())
        self.es384 = ec.generate_private_key(ec.SECP384R1())
        self.rs2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rs1024 = rsa.generate_private_key(public_exponent=65537, key_size=1024)

    def jwks(self) -> dict:
        def ec_jwk(k, crv: str, size: int, kid: str, alg: str) -> dict:
            n = k.public_key().public_numbers()
            return {"kty": "EC", "crv": crv, "x": _b64u_int(n.x, size),
                    "y": _b64u_int(n.y, size), "kid": kid, "alg": alg, "use": "sig"}

        def rsa_jwk(k, kid: str) -> dict:
            # no "alg": the key may sign RS* and PS* alike (which alg is then accepted is up
            # to the verifier's allowlist)
            n = k.public_key().public_numbers()
            return {"kty": "RSA", "n": _b64u_int(n.n), "e": _b64u_int(n.e), "kid": kid,
                    "use": "sig"}

        return {"keys": [ec_jwk(self.es256, "P-256", 32, "local-es256", "ES256"),
                         ec_jwk(self.es384, "P-384", 48, "local-es384", "ES384"),
                         rsa_jwk(self.rs2048, "local-rsa2048"),
                         rsa_jwk(self.rs1024, "local-rsa1024")]}

    def sign_raw(self, header_json: str, payload_json: str, alg: str = "ES256",
                 key: str | None = None, der: bool = False, high_s: bool = False,
                 ec_key: ec.EllipticCurvePrivateKey | None = None) -> str:
        """A compact JWS over the given JSON texts (byte-exact: duplicate keys survive).
        `ec_key` signs ES256 instead of the published P-256 key."""
        signing_input = (I.b64url(header_json) + "." + I.b64url(payload_json)).encode()
        if alg == "ES256" or alg == "ES384":
            k = ec_key or (self.es256 if alg == "ES256" else self.es384)
            h = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
            size = 32 if alg == "ES256" else 48
            d = k.sign(signing_input, ec.ECDSA(h))
            r, s = decode_dss_signature(d)
            if high_s:
                assert alg == "ES256"
                s = P256_N - s if s < P256_N // 2 else s
                d = encode_dss_signature(r, s)
            sig = d if der else r.to_bytes(size, "big") + s.to_bytes(size, "big")
        elif alg in ("RS256", "PS256"):
            k = {"rs2048": self.rs2048, "rs1024": self.rs1024}[key or "rs2048"]
            pad = (padding.PKCS1v15() if alg == "RS256" else
                   padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32))
            sig = k.sign(signing_input, pad, hashes.SHA256())
        else:
            raise ValueError(alg)
        return signing_input.decode() + "." + I.b64url(sig)

    def sign(self, payload: dict, alg: str = "ES256", key: str | None = None,
             **header: Any) -> str:
        kid = {"ES256": "local-es256", "ES384": "local-es384"}.get(alg) or (
            "local-rsa1024" if key == "rs1024" else "local-rsa2048")
        h = {"alg": alg, "typ": "at+jwt", "kid": kid, **header}
        h = {k: v for k, v in h.items() if v is not None}
        return self.sign_raw(json.dumps(h), json.dumps(payload), alg, key)


def local_claims(now: int, **override: Any) -> dict:
    c = {"iss": LOCAL_ISS, "aud": LOCAL_AUD, "sub": "local-client", "iat": now,
         "exp": now + 600, "jti": uuid.uuid4().hex}
    c.update(override)
    return {k: v for k, v in c.items() if v is not None}


# ---------------------------------------------------------------------------------------
# the two Envoys
# ---------------------------------------------------------------------------------------

def barbican_config(idp: I.IdpProc, local_jwks: dict) -> dict:
    disc = idp.discovery()
    return {
        "jwt": {"providers": [
            {"name": "idp", "issuer": disc["issuer"], "audiences": IDP_AUDS,
             "algorithms": ALGORITHMS,
             "jwks": {"uri": disc["jwks_uri"], "cluster": "idp", "refresh_s": 600},
             "clock_skew_s": CLOCK_SKEW_S},
            {"name": "local", "issuer": LOCAL_ISS, "audiences": [LOCAL_AUD],
             "algorithms": ALGORITHMS, "jwks": {"inline": local_jwks},
             "clock_skew_s": CLOCK_SKEW_S},
        ]},
        "routes": [{"match": {"path_prefix": "/"}, "policy": "api", "accept": ["jwt"]}],
        "default_policy": "deny",
    }


def jwt_authn_providers(idp: I.IdpProc, local_jwks: dict) -> dict:
    disc = idp.discovery()
    return {
        "idp": J.remote_provider(disc["issuer"], IDP_AUDS, disc["jwks_uri"], cluster="idp",
                                 clock_skew_s=CLOCK_SKEW_S),
        "local": J.local_provider(LOCAL_ISS, [LOCAL_AUD], local_jwks,
                                  clock_skew_s=CLOCK_SKEW_S),
        "idp_defaults": J.remote_provider(disc["issuer"], IDP_AUDS, disc["jwks_uri"],
                                          cluster="idp", clock_skew_s=CLOCK_SKEW_S,
                                          from_headers=None),
    }


JWT_AUTHN_RULES = [J.require(DEFAULTS_PREFIX, "idp_defaults"), J.require("/", "idp", "local")]


@pytest.fixture(scope="module")
def local_keys():
    return LocalKeys()


@pytest.fixture(scope="module")
def envoys(wasm, one_key_idp, upstream, local_keys):
    """(barbican, jwt_authn), both warmed up (key sets fetched) with a valid token."""
    jwks = local_keys.jwks()
    clusters = {"idp": one_key_idp.port, "upstream": upstream.port}
    barb = H.start_envoy(barbican_config(one_key_idp, jwks), wasm,
                         clusters={**clusters, "outpost": upstream.port})
    try:
        ref = J.start_jwt_authn_envoy(jwt_authn_providers(one_key_idp, jwks),
                                      JWT_AUTHN_RULES, clusters)
        try:
            tok = one_key_idp.token(I.RES_ES, "read")
            for env in (barb, ref):
                deadline = time.monotonic() + 10
                while True:
                    r = H.get(env.port, "/warm-up", headers=bearer(tok))
                    if verdict(r) == ACCEPT:
                        break
                    if time.monotonic() > deadline:
                        pytest.fail(f"{env.name}: a valid token is refused after 10 s: {r}\n"
                                    f"{env.log_tail()}", pytrace=False)
                    time.sleep(0.1)
            yield barb, ref
        finally:
            ref.stop()
    finally:
        barb.stop()


# ---------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------

def bearer(token: str, scheme: str = "Bearer") -> list[tuple[str, str]]:
    return [("Accept", "application/json"), ("Authorization", f"{scheme} {token}")]


def verdict(r: H.Response) -> str:
    if 200 <= r.status < 300 and r.from_upstream:
        return ACCEPT
    if r.status in (401, 403) and not r.from_upstream:
        return REJECT
    return f"status {r.status}"


@dataclass
class Req:
    headers: list[tuple[str, str]]
    query: str = ""
    prefix: str = "/differential/"


@dataclass
class Case:
    name: str
    build: Callable[["Ctx"], Req]
    expect: str = REJECT            # the verdict both filters must give (unless documented)


@dataclass
class Ctx:
    idp: I.IdpProc
    keys: LocalKeys
    now: int = field(default_factory=lambda: int(time.time()))
    _cache: dict = field(default_factory=dict)

    def claims(self, resource: str = I.RES_ES, **override: Any) -> dict:
        return self.idp.claims(resource, now=self.now, **override)

    def sign(self, claims: dict | None = None, alg: str = "ES256", **kw: Any) -> str:
        return self.idp.sign(claims if claims is not None else self.claims(), alg=alg, **kw)

    def good(self, resource: str = I.RES_ES) -> str:
        if resource not in self._cache:
            self._cache[resource] = self.idp.token(resource, "read")
        return self._cache[resource]

    def kid(self, alg: str) -> str:
        return self.idp.keys()["signing_kids"][alg]

    def local(self, **override: Any) -> dict:
        return local_claims(self.now, **override)


def tok(f: Callable[[Ctx], str]) -> Callable[[Ctx], Req]:
    """A case whose request is `Authorization: Bearer <token>`."""
    return lambda c: Req(bearer(f(c)))


def swap_sig_char(token: str, f: Callable[[str], str]) -> str:
    h, p, s = token.split(".")
    return ".".join([h, p, f(s)])


def noncanonical_tail(sig: str) -> str:
    """Set the unused low bits of the last base64url character: the decoded bytes are the
    same (a 64- or 256-byte signature leaves 4 spare bits), the text is not canonical."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    i = alphabet.index(sig[-1])
    assert len(sig) % 4 == 2 and i & 0x0F == 0, sig[-2:]
    return sig[:-1] + alphabet[i | 0x01]


def with_std_alphabet(c: Ctx) -> str:
    """A valid token whose signature contains '-' or '_' rewritten as '+' / '/'."""
    for _ in range(50):
        t = c.sign()
        s = t.rsplit(".", 1)[1]
        if "-" in s or "_" in s:
            return swap_sig_char(t, lambda x: x.replace("-", "+").replace("_", "/"))
    raise AssertionError("no signature with '-' or '_' in 50 tries")


def padded_payload(c: Ctx) -> str:
    """A valid token whose payload part gets the '=' padding base64 would give it."""
    for n in range(3):
        h, p, s = c.sign(c.claims(pad="x" * n)).split(".")
        if len(p) % 4:
            return f"{h}.{p}{'=' * (-len(p) % 4)}.{s}"
    raise AssertionError("unreachable: one of three lengths needs padding")


def embedded_jwk(c: Ctx) -> str:
    """Signed by a key nobody published, which the header carries as `jwk` (RFC 7515
    §4.1.3): a verifier that trusted it would accept anyone's token."""
    k = ec.generate_private_key(ec.SECP256R1())
    n = k.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "x": _b64u_int(n.x, 32), "y": _b64u_int(n.y, 32)}
    return c.keys.sign_raw(json.dumps({"alg": "ES256", "typ": "at+jwt", "jwk": jwk}),
                           json.dumps(c.local()), ec_key=k)


def header_json(alg: str, kid: str, **extra: Any) -> str:
    return json.dumps({"alg": alg, "typ": "at+jwt", "kid": kid, **extra})


CASES: list[Case] = [
    # --- valid tokens from the IdP ------------------------------------------------------
    Case("valid ES256 (IdP token endpoint)", tok(lambda c: c.good(I.RES_ES)), ACCEPT),
    Case("valid RS256 (IdP token endpoint)", tok(lambda c: c.good(I.RES_RS)), ACCEPT),
    Case("valid EdDSA (IdP token endpoint)", tok(lambda c: c.good(I.RES_ED)), ACCEPT),
    Case("valid ES256 without kid", tok(lambda c: c.sign(header={"kid": None})), ACCEPT),
    Case("valid, typ JWT", tok(lambda c: c.sign(header={"typ": "JWT"})), ACCEPT),
    Case("valid, no typ", tok(lambda c: c.sign(header={"typ": None})), ACCEPT),
    Case("valid, unknown header field", tok(lambda c: c.sign(header={"x-extra": 1})), ACCEPT),
    Case("aud array containing the right one",
         tok(lambda c: c.sign(c.claims(aud=["urn:someone:else", I.RES_ES]))), ACCEPT),
    Case("exp 2 s ago (within clock skew)",
         tok(lambda c: c.sign(c.claims(iat=c.now - 60, exp=c.now - 2))), ACCEPT),
    Case("nbf 2 s ahead (within clock skew)",
         tok(lambda c: c.sign(c.claims(nbf=c.now + 2))), ACCEPT),
    Case("iat in the future", tok(lambda c: c.sign(c.claims(iat=c.now + 3600))), ACCEPT),
    Case("exp in 100 years", tok(lambda c: c.sign(c.claims(exp=c.now + 100 * 365 * 86400))),
         ACCEPT),
    Case("exp with a fraction", tok(lambda c: c.sign(c.claims(exp=c.now + 600.5))), ACCEPT),
    Case("exp 1e19 (fits in 64 bits)", tok(lambda c: c.sign(c.claims(exp=10**19))), ACCEPT),
    Case("exp 1e20 (beyond 64 bits)", tok(lambda c: c.sign(c.claims(exp=10**20)))),
    Case("aud array with a non-string next to the right one",
         tok(lambda c: c.sign(c.claims(aud=[I.RES_ES, 5])))),
    Case("local: iss with JSON-escaped slashes",
         tok(lambda c: c.keys.sign_raw(header_json("ES256", "local-es256"),
                                       json.dumps(c.local()).replace("/", "\\/"))), ACCEPT),
    # --- claims ---------------------------------------------------------------------------
    Case("expired", tok(lambda c: c.sign(c.claims(iat=c.now - 700, exp=c.now - 100)))),
    Case("expired beyond clock skew",
         tok(lambda c: c.sign(c.claims(iat=c.now - 60, exp=c.now - CLOCK_SKEW_S - 10)))),
    Case("nbf in the future", tok(lambda c: c.sign(c.claims(nbf=c.now + 120)))),
    Case("missing exp", tok(lambda c: c.sign(c.claims(exp=None)))),
    Case("exp as a string", tok(lambda c: c.sign(c.claims(exp=str(c.now + 600))))),
    Case("exp negative", tok(lambda c: c.sign(c.claims(exp=-1)))),
    Case("nbf 1e20", tok(lambda c: c.sign(c.claims(nbf=10**20)))),
    Case("iss not a string", tok(lambda c: c.sign(c.claims(iss=5)))),
    Case("wrong iss", tok(lambda c: c.sign(c.claims(iss="https://evil.test")))),
    Case("iss with a trailing slash", tok(lambda c: c.sign(c.claims(iss=c.idp.base + "/")))),
    Case("missing iss", tok(lambda c: c.sign(c.claims(iss=None)))),
    Case("wrong aud (IdP token for another resource)", tok(lambda c: c.good(I.RES_OTHER))),
    Case("aud array without the right one",
         tok(lambda c: c.sign(c.claims(aud=["urn:a", "urn:b"])))),
    Case("missing aud", tok(lambda c: c.sign(c.claims(aud=None)))),
    # --- algorithms and keys --------------------------------------------------------------
    Case("alg none", tok(lambda c: c.sign(alg="none"))),
    Case("alg none with our kid",
         tok(lambda c: c.sign(alg="none", header={"kid": c.kid("ES256")}))),
    Case("HS256 keyed with the RSA public key",
         tok(lambda c: c.sign(alg="HS256", signer="rsa-public-pem"))),
    Case("alg in lower case (es256)", tok(lambda c: c.sign(header={"alg": "es256"}))),
    Case("empty kid", tok(lambda c: c.sign(header={"kid": ""}))),
    Case("kid not a string", tok(lambda c: c.sign(header={"kid": 5}))),
    Case("local: embedded jwk header with an unpublished key",
         tok(lambda c: embedded_jwk(c))),
    Case("unknown kid (foreign key)",
         tok(lambda c: c.sign(signer="foreign", header={"kid": "unknown-" + uuid.uuid4().hex}))),
    Case("foreign key under our kid",
         tok(lambda c: c.sign(signer="foreign", header={"kid": c.kid("ES256")}))),
    Case("ES256 header on the RSA key's kid",
         tok(lambda c: c.sign(header={"kid": c.kid("RS256")}))),
    Case("RS256 signature under the EC key's kid",
         tok(lambda c: c.sign(c.claims(I.RES_RS), alg="RS256", header={"kid": c.kid("ES256")}))),
    Case("EdDSA signature under the EC key's kid",
         tok(lambda c: c.sign(c.claims(I.RES_ED), alg="EdDSA",
                              header={"kid": c.kid("ES256")}))),
    # --- local issuer (keys held here) ----------------------------------------------------
    Case("local: valid ES256", tok(lambda c: c.keys.sign(c.local())), ACCEPT),
    Case("local: valid RS256 (2048-bit key without alg)",
         tok(lambda c: c.keys.sign(c.local(), alg="RS256")), ACCEPT),
    Case("local: RS256 with a 1024-bit RSA key",
         tok(lambda c: c.keys.sign(c.local(), alg="RS256", key="rs1024"))),
    Case("local: PS256 (not in the allowed algorithms)",
         tok(lambda c: c.keys.sign(c.local(), alg="PS256"))),
    Case("local: ES384 with a published P-384 key (not in the allowed algorithms)",
         tok(lambda c: c.keys.sign(c.local(), alg="ES384"))),
    Case("local: ECDSA signature DER-encoded",
         tok(lambda c: c.keys.sign_raw(header_json("ES256", "local-es256"),
                                       json.dumps(c.local()), der=True))),
    Case("local: ECDSA high-S signature (malleated)",
         tok(lambda c: c.keys.sign_raw(header_json("ES256", "local-es256"),
                                       json.dumps(c.local()), high_s=True)), ACCEPT),
    Case("local: duplicate sub in the payload",
         tok(lambda c: c.keys.sign_raw(header_json("ES256", "local-es256"),
                                       json.dumps(c.local())[:-1] + ', "sub": "admin"}'))),
    Case("local: duplicate exp (expired first, valid last)",
         tok(lambda c: c.keys.sign_raw(
             header_json("ES256", "local-es256"),
             json.dumps(c.local(exp=c.now - 3600))[:-1] + f', "exp": {c.now + 600}}}'))),
    Case("local: duplicate exp (valid first, expired last)",
         tok(lambda c: c.keys.sign_raw(
             header_json("ES256", "local-es256"),
             json.dumps(c.local(exp=c.now + 600))[:-1] + f', "exp": {c.now - 3600}}}'))),
    Case("local: duplicate aud (wrong first, right last)",
         tok(lambda c: c.keys.sign_raw(
             header_json("ES256", "local-es256"),
             json.dumps(c.local(aud="urn:wrong"))[:-1] + f', "aud": "{LOCAL_AUD}"}}'))),
    Case("local: duplicate alg in the header (none first)",
         tok(lambda c: c.keys.sign_raw(
             '{"alg": "none", "typ": "at+jwt", "kid": "local-es256", "alg": "ES256"}',
             json.dumps(c.local())))),
    Case("local: payload is a JSON array",
         tok(lambda c: c.keys.sign_raw(header_json("ES256", "local-es256"),
                                       json.dumps([c.local()])))),
    Case("local: payload is not JSON",
         tok(lambda c: c.keys.sign_raw(header_json("ES256", "local-es256"), "hello"))),
    Case("local: header is not JSON",
         tok(lambda c: c.keys.sign_raw("{alg: ES256}", json.dumps(c.local())))),
    Case("local: trailing garbage after the payload JSON",
         tok(lambda c: c.keys.sign_raw(header_json("ES256", "local-es256"),
                                       json.dumps(c.local()) + "x"))),
    # --- header parameters ----------------------------------------------------------------
    Case("typ JWE", tok(lambda c: c.sign(header={"typ": "JWE"}))),
    Case("typ secevent+jwt (not an access token)",
         tok(lambda c: c.sign(header={"typ": "secevent+jwt"}))),
    Case("crit header (unknown extension)",
         tok(lambda c: c.sign(header={"crit": ["urn:x:unknown"], "urn:x:unknown": True}))),
    Case("crit header naming exp", tok(lambda c: c.sign(header={"crit": ["exp"]}))),
    # --- encoding and structure -----------------------------------------------------------
    Case("tampered payload", tok(lambda c: tamper_payload(c.good(), sub="root"))),
    Case("tampered signature", tok(lambda c: tamper_signature(c.good()))),
    Case("empty signature", tok(lambda c: c.good().rsplit(".", 1)[0] + ".")),
    Case("no signature part", tok(lambda c: c.good().rsplit(".", 1)[0])),
    Case("extra trailing dot", tok(lambda c: c.good() + ".")),
    Case("extra fourth part", tok(lambda c: c.good() + ".e30")),
    Case("five parts (JWE shape)", tok(lambda c: c.good() + ".e30.e30")),
    Case("bad base64 character in the header", tok(lambda c: "!" + c.good()[1:])),
    Case("signature with '=' padding",
         tok(lambda c: swap_sig_char(c.good(), lambda s: s + "=" * (-len(s) % 4)))),
    Case("signature in the standard base64 alphabet (+ /)", tok(with_std_alphabet)),
    Case("signature with non-canonical trailing bits",
         tok(lambda c: swap_sig_char(c.sign(), noncanonical_tail))),
    Case("payload with '=' padding", tok(lambda c: padded_payload(c))),
    Case("not a JWT", tok(lambda c: "not-a-jwt")),
    Case("oversize token (10 KB claim)",
         tok(lambda c: c.sign(c.claims(blob="x" * 10_000)))),
    Case("oversize token (20 KB claim)",
         tok(lambda c: c.sign(c.claims(blob="x" * 20_000)))),
    # --- where the token is ---------------------------------------------------------------
    Case("no Authorization header", lambda c: Req([("Accept", "application/json")])),
    Case("token in ?access_token= only",
         lambda c: Req([("Accept", "application/json")], "access_token=" + c.good())),
    Case("token in ?access_token= only, jwt_authn's default token locations",
         lambda c: Req([("Accept", "application/json")], "access_token=" + c.good(),
                       prefix=DEFAULTS_PREFIX)),
    Case("token in ?token= only",
         lambda c: Req([("Accept", "application/json")], "token=" + c.good())),
    Case("lower-case scheme 'bearer'", lambda c: Req(bearer(c.good(), "bearer")), ACCEPT),
    Case("upper-case scheme 'BEARER'", lambda c: Req(bearer(c.good(), "BEARER")), ACCEPT),
    Case("two spaces after Bearer", lambda c: Req(bearer(" " + c.good())), ACCEPT),
    Case("a word after the token", lambda c: Req(bearer(c.good() + " extra"))),
    Case("a second credential after a comma",
         lambda c: Req(bearer(c.good() + ", Basic eDp5"))),
    Case("scheme Basic with the token", lambda c: Req(
        [("Authorization", "Basic " + base64.b64encode(b"x:" + c.good().encode()).decode())])),
    Case("'Bearer' without a token", lambda c: Req([("Authorization", "Bearer")])),
    Case("two Authorization headers: valid then garbage",
         lambda c: Req(bearer(c.good()) + [("Authorization", "Bearer garbage")])),
    Case("two Authorization headers: garbage then valid",
         lambda c: Req([("Authorization", "Bearer garbage")] + bearer(c.good()))),
    # Envoy hands both filters one Authorization value, the two joined with ',' (jwt_authn's
    # answers name the broken part): no filter picks one of them.
    Case("two Authorization headers: both valid",
         lambda c: Req(bearer(c.good()) + [("Authorization", "Bearer " + c.good(I.RES_RS))])),
]

@dataclass(frozen=True)
class Difference:
    jwt_authn: str          # jwt_authn's verdict, measured (Envoy 1.40)
    status: int             # Barbican's exact answer: 200 from the upstream, or 401 ...
    error: str | None       # ... with this `error=` in its Bearer challenge (None: no error)
    why: str


# Deliberate differences: Barbican is stricter (or, for the scheme's case, more RFC-faithful)
# than jwt_authn's defaults. jwt_authn's side was measured against Envoy 1.40, not assumed.
DIFFERENCES: dict[str, Difference] = {
    "missing exp": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn's `require_expiration` defaults to false; Barbican always requires `exp` "
        "(RFC 9068 §2.2 makes it REQUIRED in access tokens; without it a token is valid, "
        "and cached, forever)"),
    "empty kid": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn treats `\"kid\": \"\"` as no kid and tries every key; Barbican takes a "
        "present kid literally: it must name a published key"),
    "local: RS256 with a 1024-bit RSA key": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn verifies with any RSA modulus; Barbican skips RSA keys under 2048 bits "
        "when it reads a JWKS (RFC 7518 §3.3: 2048 bits or larger MUST be used)"),
    "local: PS256 (not in the allowed algorithms)": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn has no algorithm allowlist (any alg the key type can do); Barbican only "
        "accepts the provider's `algorithms` (RS256, ES256, EdDSA here)"),
    "local: ES384 with a published P-384 key (not in the allowed algorithms)": Difference(
        ACCEPT, 401, "invalid_token",
        "as PS256: the provider's `algorithms` is an allowlist in Barbican only"),
    "typ JWE": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn ignores `typ`; Barbican accepts only JWT / at+jwt (RFC 8725 §3.11 explicit "
        "typing: a token of another kind from the same keys is not an access token)"),
    "typ secevent+jwt (not an access token)": Difference(
        ACCEPT, 401, "invalid_token", "as typ JWE"),
    "crit header (unknown extension)": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn ignores `crit`; RFC 7515 §4.1.11: a recipient that does not understand a "
        "critical extension MUST reject the JWS (Barbican understands none)"),
    "crit header naming exp": Difference(ACCEPT, 401, "invalid_token", "as the crit above"),
    "extra trailing dot": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn accepts `h.p.s.`; a compact JWS has exactly three parts (RFC 7515 §7.1), "
        "and Barbican caches by the whole token, so it admits one spelling per token"),
    "signature with '=' padding": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn's base64url decoder takes padding; RFC 7515 §2 base64url has none"),
    "signature with non-canonical trailing bits": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn ignores the spare low bits of the last character (16 spellings of one "
        "signature); Barbican decodes canonical base64url only"),
    "oversize token (10 KB claim)": Difference(
        ACCEPT, 401, "invalid_token",
        "jwt_authn has no token size limit below Envoy's header limit (60 KiB); Barbican's "
        "`max_token_bytes` defaults to 8192"),
    "oversize token (20 KB claim)": Difference(
        ACCEPT, 401, "invalid_token",
        "as 10 KB; also over `limits.max_credential_bytes` (16384), which on an api route is "
        "a 401 invalid_token (token_too_large), not a 431"),
    "token in ?access_token= only, jwt_authn's default token locations": Difference(
        ACCEPT, 401, None,
        "jwt_authn without from_headers/from_params also reads `?access_token=`; Barbican "
        "reads a query parameter only where a route names one (`token_query`): tokens in "
        "URLs end up in logs and Referer headers (RFC 6750 §2.3, §5.3)"),
    "lower-case scheme 'bearer'": Difference(
        REJECT, 200, None,
        "jwt_authn matches `value_prefix: \"Bearer \"` case-sensitively (`Jwt is missing`); "
        "authentication schemes are case-insensitive (RFC 9110 §11.1), Barbican agrees"),
    "upper-case scheme 'BEARER'": Difference(REJECT, 200, None, "as lower-case 'bearer'"),
}

# Differences that look like Barbican bugs: the test expects Barbican to give jwt_authn's
# verdict and is marked xfail(strict=True) until src/ is fixed (then drop the entry).
KNOWN_BUGS: dict[str, str] = {
}


def send(env: H.EnvoyProc, req: Req, i: int) -> H.Response:
    target = f"{req.prefix}{i}" + (f"?{req.query}" if req.query else "")
    return H.get(env.port, target, headers=req.headers)


@pytest.fixture(scope="module")
def results(envoys, one_key_idp, local_keys):
    """name -> (jwt_authn response, Barbican response) for the whole corpus."""
    barb, ref = envoys
    ctx = Ctx(one_key_idp, local_keys)
    out = {}
    for i, case in enumerate(CASES):
        req = case.build(ctx)
        out[case.name] = (send(ref, req, i), send(barb, req, i))
    return out


def test_case_names_are_unique_and_differences_are_cases():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert set(DIFFERENCES) <= set(names), set(DIFFERENCES) - set(names)
    assert set(KNOWN_BUGS) <= set(names), set(KNOWN_BUGS) - set(names)
    assert not set(KNOWN_BUGS) & set(DIFFERENCES)
    for name, d in DIFFERENCES.items():
        # a documented difference is one where the verdicts differ
        assert d.jwt_authn != (ACCEPT if d.status == 200 else REJECT), name


def _param(case: Case):
    marks = ()
    if case.name in KNOWN_BUGS:
        marks = (pytest.mark.xfail(reason=KNOWN_BUGS[case.name], strict=True),)
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_same_verdict(results, case):
    ref_r, barb_r = results[case.name]
    got = (verdict(ref_r), verdict(barb_r))
    d = DIFFERENCES.get(case.name)
    if d is None:
        assert got == (case.expect, case.expect), (
            f"jwt_authn {ref_r!r}\nBarbican {barb_r!r}")
        return
    assert got[0] == d.jwt_authn, f"jwt_authn changed ({d.why}): {ref_r!r}"
    assert barb_r.status == d.status, f"Barbican changed ({d.why}): {barb_r!r}"
    if d.status == 200:
        assert barb_r.from_upstream, barb_r
        return
    assert not barb_r.from_upstream and barb_r.header("Location") is None, barb_r
    challenge = barb_r.header("WWW-Authenticate") or ""
    assert re.match(r"(?i)bearer\b", challenge), (d.why, barb_r)
    if d.error is None:
        assert "error=" not in challenge, (d.why, challenge)
    else:
        assert f'error="{d.error}"' in challenge, (d.why, challenge)
