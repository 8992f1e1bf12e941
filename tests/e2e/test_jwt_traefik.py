"""The JWT corpus of test_jwt_differential.py through Barbican on Traefik: the same verdict,
status and Bearer `error=` as Barbican on Envoy, token for token.

Set-up (module-scoped, loopback, everything stopped at the end):
- the test IdP (RS256, ES256, EdDSA) and the "local" issuer's keys, as in the differential;
- Barbican on Envoy with the differential's configuration (the IdP's key set fetched through
  a cluster, the local one inline);
- Barbican on Traefik with the same configuration except where the IdP's keys come from:
  Traefik plugins cannot call out, so the IdP's JWKS (fetched here once) is a mounted file
  (`jwks.file`); the local issuer's stays inline.

Each case's request is built once and sent to both. The expected verdict is the corpus's
(Barbican's column of DIFFERENCES where documented); on top of that Traefik must answer
exactly what Envoy answers (status, `error=` of the challenge), so a host-specific
divergence in header handling shows up here.
"""

from __future__ import annotations

import json
import re
import time

import pytest

import harness as H
import idp as I
import traefik as T
from test_jwt_differential import (ACCEPT, CASES, DIFFERENCES, REJECT, Ctx, LocalKeys, Req,
                                   barbican_config, bearer, verdict)

HOST = "jwt.traefik.test"


def traefik_config(idp: I.IdpProc, local_jwks: dict, idp_jwks_file: str) -> dict:
    cfg = barbican_config(idp, local_jwks)
    for p in cfg["jwt"]["providers"]:
        if p["name"] == "idp":
            p["jwks"] = {"file": idp_jwks_file}
    return cfg


@pytest.fixture(scope="module")
def corpus_keys():
    return LocalKeys()


def _warm(name: str, send, tok: str, log_tail) -> None:
    deadline = time.monotonic() + 10
    while True:
        r = send(tok)
        if verdict(r) == ACCEPT:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{name}: a valid token is refused after 10 s: {r}\n{log_tail()}",
                        pytrace=False)
        time.sleep(0.1)


@pytest.fixture(scope="module")
def hosts(wasm, one_key_idp, upstream, corpus_keys):
    """(envoy, traefik), both accepting a valid IdP token."""
    jwks = corpus_keys.jwks()
    keydir = H.new_tmp_dir("idp-jwks")
    (keydir / "idp.json").write_text(json.dumps(one_key_idp.jwks()))
    env = H.start_envoy(barbican_config(one_key_idp, jwks), wasm,
                        clusters={"idp": one_key_idp.port, "upstream": upstream.port,
                                  "outpost": upstream.port})
    try:
        tr = T.start_traefik(
            routers={"jwt": T.router(HOST, ["barbican"])},
            middlewares={"barbican": T.plugin_middleware(
                traefik_config(one_key_idp, jwks, str(keydir / "idp.json")))},
            services={"upstream": upstream.port},
            plugin_settings={T.PLUGIN: {"mounts": [f"{keydir}:{keydir}:ro"]}})
        try:
            tok = one_key_idp.token(I.RES_ES, "read")
            _warm("envoy", lambda t: H.get(env.port, "/warm-up", headers=bearer(t)), tok,
                  env.log_tail)
            _warm("traefik", lambda t: H.get(tr.port, "/warm-up", host=HOST,
                                             headers=bearer(t)), tok, tr.log_tail)
            yield env, tr
        finally:
            tr.stop()
    finally:
        env.stop()


def send(port: int, req: Req, i: int, host: str | None = None) -> H.Response:
    target = f"{req.prefix}{i}" + (f"?{req.query}" if req.query else "")
    kw = {"host": host} if host else {}
    return H.get(port, target, headers=req.headers, **kw)


@pytest.fixture(scope="module")
def results(hosts, one_key_idp, corpus_keys):
    """name -> (Barbican on Envoy, Barbican on Traefik) for the whole corpus."""
    env, tr = hosts
    ctx = Ctx(one_key_idp, corpus_keys)
    out = {}
    for i, case in enumerate(CASES):
        req = case.build(ctx)
        out[case.name] = (send(env.port, req, i), send(tr.port, req, i, HOST))
    return out


def expected(name: str, expect: str) -> str:
    d = DIFFERENCES.get(name)
    if d is None:
        return expect
    return ACCEPT if d.status == 200 else REJECT


def bearer_error(r: H.Response) -> str | None:
    m = re.search(r'error="([^"]*)"', r.header("WWW-Authenticate") or "")
    return m.group(1) if m else None


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_same_answer_as_on_envoy(results, case):
    env_r, tr_r = results[case.name]
    want = expected(case.name, case.expect)
    assert verdict(env_r) == want, f"Barbican on Envoy: {env_r!r}"
    assert verdict(tr_r) == want, f"Barbican on Traefik: {tr_r!r}\nEnvoy: {env_r!r}"
    assert tr_r.status == env_r.status, (tr_r, env_r)
    if want == REJECT:
        assert tr_r.header("Location") is None, tr_r
        assert re.match(r"(?i)bearer\b", tr_r.header("WWW-Authenticate") or ""), tr_r
        assert bearer_error(tr_r) == bearer_error(env_r), (tr_r, env_r)
    else:
        assert tr_r.upstream_header("x-authentik-uid") == env_r.upstream_header(
            "x-authentik-uid"), (tr_r.upstream["headers"], env_r.upstream["headers"])
