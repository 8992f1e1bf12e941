"""`barbican jwks-sync` against the test OpenID provider (servers/oidc, npm oidc-provider,
with its /__test/rotate, /__test/retire and /__test/mode?jwks= controls): the key-set file the
Traefik plugin reads (`jwks.file`) is written atomically, only when the keys changed and only
with a valid set; an unreachable IdP or an invalid answer keeps the old file and says why.
Discovery per OpenID Connect Discovery 1.0 §4 (`/.well-known/openid-configuration`)."""

from __future__ import annotations

import json
import subprocess
import time

import harness as H
import serve_host as S


def sync(*args: str, timeout: float = 20) -> tuple[int, str]:
    p = subprocess.run([str(S.require_binary()), "jwks-sync", *args], capture_output=True,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def kids(path) -> set[str]:
    return {k.get("kid") for k in json.loads(path.read_text())["keys"]}


def test_once_by_discovery_writes_only_when_the_keys_change(idp, tmp_path):
    out = tmp_path / "jwks.json"
    rc, msg = sync("--issuer", idp.base, "--out", str(out))
    assert rc == 0 and "written" in msg, msg
    assert kids(out) == {k["kid"] for k in idp.jwks()["keys"]}
    mtime = out.stat().st_mtime_ns
    rc, msg = sync("--issuer", idp.base, "--out", str(out))
    assert rc == 0 and "unchanged" in msg, msg
    assert out.stat().st_mtime_ns == mtime
    # A rotation publishes the next generation: the file follows, with the old keys kept
    # while the IdP still publishes them.
    before = kids(out)
    idp.rotate()
    rc, msg = sync("--jwks-uri", idp.discovery()["jwks_uri"], "--out", str(out))
    assert rc == 0 and "updated" in msg, msg
    after = kids(out)
    assert after > before, (before, after)
    idp.retire()
    rc, msg = sync("--issuer", idp.base, "--out", str(out))
    assert rc == 0 and "updated" in msg
    assert kids(out) == {k["kid"] for k in idp.jwks()["keys"]} and kids(out) < after
    assert [p.name for p in tmp_path.iterdir()] == ["jwks.json"], "a temporary file was left"


def test_invalid_answers_and_an_unreachable_idp_keep_the_old_file(idp, tmp_path):
    out = tmp_path / "jwks.json"
    assert sync("--issuer", idp.base, "--out", str(out))[0] == 0
    good = out.read_bytes()
    try:
        for mode, says in (("garbage", "jwks"), ("error", "HTTP 500")):
            idp.set_mode(jwks=mode)
            rc, msg = sync("--issuer", idp.base, "--out", str(out))
            assert rc == 1 and says in msg and "left as it was" in msg, (mode, msg)
            assert out.read_bytes() == good
    finally:
        idp.set_mode(jwks="ok")
    dead = H.free_port()
    rc, msg = sync("--jwks-uri", f"http://127.0.0.1:{dead}/jwks", "--out", str(out),
                   "--timeout-ms", "1000")
    assert rc == 1 and "connect" in msg and "left as it was" in msg, msg
    assert out.read_bytes() == good
    # An issuer whose discovery document names another issuer is not trusted for keys.
    rc, msg = sync("--issuer", idp.base + "/other", "--out", str(out))
    assert rc == 1 and out.read_bytes() == good, msg
    # Nothing written at all when the first fetch fails.
    fresh = tmp_path / "never.json"
    rc, msg = sync("--jwks-uri", f"http://127.0.0.1:{dead}/jwks", "--out", str(fresh),
                   "--timeout-ms", "1000")
    assert rc == 1 and not fresh.exists()


def test_loop_mode_follows_a_rotation_and_stops_on_sigterm(idp, tmp_path):
    out = tmp_path / "jwks.json"
    p = H.Proc("jwks-sync", [str(S.require_binary()), "jwks-sync", "--issuer", idp.base,
                             "--out", str(out), "--interval", "1"])
    p.start()
    try:
        H.wait_until(lambda: out.exists(), 10, what="first sync")
        first = kids(out)
        idp.rotate()
        H.wait_until(lambda: kids(out) != first, 10, what="the rotated key set")
        assert kids(out) > first
        p.popen.terminate()
        assert p.popen.wait(10) == 0
        assert "updated" in p.log_text()
    finally:
        p.stop()
        time.sleep(0)
