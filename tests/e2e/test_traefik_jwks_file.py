"""Key sets from a mounted file on Traefik (`jwks: {"file": ...}`): real Traefik, the built
plugin, the echo upstream. The key directory is mounted into the plugin's WASI with
`settings.mounts`; the file is rewritten while Traefik runs:

- key A in the file: tokens signed with A pass, B's are refused;
- the file rewritten with key B (atomically, and in place): within a second or so B passes
  and A is refused — in every pooled instance, without a restart;
- garbage written: an instance that had the keys keeps them (one keep-alive connection, so
  the same pooled instance answers), the error is logged; an instance created meanwhile has
  no keys and refuses (fail closed, never 5xx or a pass);
- a provider whose file does not exist yet refuses its tokens, then takes them once the file
  appears.

Also: `barbican check` reads the file to validate it (Envoy's refusal is in
test_config_refused.py).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import harness as H
import traefik as T
from test_traefik import AUDIENCE, ISSUER, bearer, claims, jwk, sign

KEY_A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_B = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ROT, LATE = "rotate.test", "late.test"
# Every pooled instance checks its file at most once a second; give it that plus slack.
SETTLE_S = 1.2
DEADLINE_S = 8.0


def jwks(*keys: tuple[rsa.RSAPrivateKey, str]) -> dict:
    return {"keys": [jwk(k, kid) for k, kid in keys]}


def tok(key: rsa.RSAPrivateKey, kid: str) -> str:
    return sign(claims(), key=key, kid=kid)


def write_atomically(path: Path, text: str) -> None:
    """How Kubernetes secrets and most deploy tools replace a file: write aside, rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plugin_config(path: Path) -> dict:
    return {"jwt": {"providers": [{"issuer": ISSUER, "audiences": [AUDIENCE],
                                   "algorithms": ["RS256"], "jwks": {"file": str(path)}}]},
            "routes": [{"match": {"path_prefix": "/api/"}, "policy": "api"}],
            "default_policy": "deny"}


@pytest.fixture(scope="module")
def keydir():
    d = H.new_tmp_dir("jwks-mount")
    (d / "jwks.json").write_text(json.dumps(jwks((KEY_A, "key-a"))))
    return d


@pytest.fixture(scope="module")
def traefik(upstream_plain, keydir):
    def ready(t: T.TraefikProc) -> bool:
        try:
            return H.get(t.port, "/api/x", host=ROT, headers=bearer(tok(KEY_A, "key-a")),
                         timeout=2).from_upstream
        except OSError:
            return False

    t = T.start_traefik(
        routers={"rot": T.router(ROT, ["rot"]), "late": T.router(LATE, ["late"])},
        middlewares={"rot": T.plugin_middleware(plugin_config(keydir / "jwks.json")),
                     "late": T.plugin_middleware(plugin_config(keydir / "late.json"))},
        services={"upstream": upstream_plain.port},
        plugin_settings={T.PLUGIN: {"mounts": [f"{keydir}:{keydir}:ro"]}},
        probe=ready)
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture(scope="module")
def upstream_plain():
    up = H.start_upstream()
    try:
        yield up
    finally:
        up.stop()


def verdicts(t: T.TraefikProc, host: str, tokens: dict[str, str], n: int = 8) -> dict[str, set]:
    """Each token sent n times concurrently (so several pooled instances answer): name ->
    the set of statuses seen."""
    jobs = [(name, tk) for name, tk in tokens.items() for _ in range(n)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        got = list(pool.map(lambda j: (j[0], H.get(t.port, "/api/x", host=host,
                                                   headers=bearer(j[1]), timeout=5).status),
                            jobs))
    out: dict[str, set] = {name: set() for name in tokens}
    for name, status in got:
        out[name].add(status)
    return out


def settle(t: T.TraefikProc, host: str, tokens: dict[str, str], want: dict[str, set]) -> dict:
    """Waits (bounded) until every instance gives the wanted statuses; returns the last seen."""
    time.sleep(SETTLE_S)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got = verdicts(t, host, tokens)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_keys_rotate_through_the_file_without_a_restart(traefik, keydir):
    a, b = tok(KEY_A, "key-a"), tok(KEY_B, "key-b")
    pid = traefik.popen.pid
    assert verdicts(traefik, ROT, {"a": a, "b": b}) == {"a": {200}, "b": {401}}

    write_atomically(keydir / "jwks.json", json.dumps(jwks((KEY_B, "key-b"))))
    got = settle(traefik, ROT, {"a": a, "b": b}, {"a": {401}, "b": {200}})
    assert got == {"a": {401}, "b": {200}}, (got, traefik.log_tail())

    # In place (truncate and write), and key A back under B's kid: a cached verification of
    # a token must not survive its key being replaced, even under the same kid.
    a_as_b = tok(KEY_A, "key-b")
    (keydir / "jwks.json").write_text(json.dumps(jwks((KEY_A, "key-b"))))
    got = settle(traefik, ROT, {"a": a_as_b, "b": b}, {"a": {200}, "b": {401}})
    assert got == {"a": {200}, "b": {401}}, (got, traefik.log_tail())

    assert traefik.alive() and traefik.popen.pid == pid


def test_garbage_keeps_the_last_good_set_and_is_logged(traefik, keydir):
    """Each bad write after a good one: instances that had the keys keep answering B's token
    (and only B's). Traefik may create an instance meanwhile (its pool is emptied by Go's
    garbage collector), which has no keys and refuses: at least one answer must come from an
    instance that re-checked the bad file (SETTLE_S > the check interval) and kept its set."""
    good = jwks((KEY_B, "key-b"))
    b = tok(KEY_B, "key-b")
    a = tok(KEY_A, "key-a")
    for garbage in ('{"keys": [', "", '{"keys": []}'):
        write_atomically(keydir / "jwks.json", json.dumps(good))
        assert settle(traefik, ROT, {"a": a, "b": b}, {"a": {401}, "b": {200}}) == \
            {"a": {401}, "b": {200}}, garbage
        write_atomically(keydir / "jwks.json", garbage)
        time.sleep(SETTLE_S)
        with H.KeepAliveClient(traefik.port, host=ROT) as c:
            got_b = [c.request("/api/x", headers=bearer(b)).status for _ in range(5)]
            got_a = [c.request("/api/x", headers=bearer(a)).status for _ in range(2)]
        assert 200 in got_b and set(got_b) <= {200, 401}, (garbage, got_b, traefik.log_tail())
        assert set(got_a) == {401}, (garbage, got_a)
    log = traefik.log_text()
    assert "ERR barbican: jwt.providers[0].jwks.file: " in log, log[-3000:]
    assert "keeping the last good key set" in log, log[-3000:]
    # Never the key material (public, but a misplaced private key must not reach the log).
    assert good["keys"][0]["n"][:40] not in log


def test_a_file_that_appears_later_is_picked_up(traefik, keydir):
    b = tok(KEY_B, "key-b")
    late = keydir / "late.json"
    assert verdicts(traefik, LATE, {"b": b}) == {"b": {401}}
    assert "late.json: cannot read" in traefik.log_text()
    write_atomically(late, json.dumps(jwks((KEY_B, "key-b"))))
    got = settle(traefik, LATE, {"b": b}, {"b": {200}})
    assert got == {"b": {200}}, (got, traefik.log_tail())


def test_cli_check_reads_the_file(tmp_path):
    cli = H.REPO / "dist" / "barbican"
    if not cli.is_file():
        pytest.fail("dist/barbican is missing: make build", pytrace=False)
    keys = tmp_path / "jwks.json"
    cfg = tmp_path / "barbican.json"
    cfg.write_text(json.dumps(plugin_config(keys)))

    def check() -> tuple[int, str]:
        p = subprocess.run([str(cli), "check", str(cfg)], capture_output=True, text=True,
                           timeout=30)
        return p.returncode, p.stdout + p.stderr

    rc, out = check()
    assert rc == 1 and "jwt.providers[0].jwks.file: cannot read" in out, out
    keys.write_text("{}")
    rc, out = check()
    assert rc == 1 and 'no "keys" array' in out, out
    keys.write_text(json.dumps(jwks((KEY_A, "key-a"))))
    rc, out = check()
    assert rc == 0 and out.strip().endswith(": ok"), out
