#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/) from the project's test vectors.

    python3 fuzz/seeds.py            # text seeds: config, path_route, jwks, introspection
    python3 fuzz/seeds.py --merge    # also fold fuzz/target/work/<target>/ into the seeds,
                                     # minimized by libFuzzer (-merge=1), for every target

Text targets take their inputs as they are in the tests: configuration documents (README's
JSON blocks, examples/serve/barbican.yaml, the shapes the engine tests use), request paths
(string literals of src/route.rs's tests), key sets (RFC 7517 / RFC 8037 example keys plus
broken ones), introspection answers (RFC 7662 §2.2 and Authentik's). The structured targets
(jwt, headers, idp_answer, seal, engine) read `arbitrary` bytes: their seeds are what a run
found, minimized with --merge. Each seed file is named by its SHA-1, so re-running adds
nothing twice. Bounded per target (MAX_TARGET_BYTES, MAX_TARGET_FILES).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
# Per target, after minimization: the smallest inputs first, up to these bounds (the
# whole corpus stays well under 2 MB and a few thousand files).
MAX_TARGET_BYTES = 200_000
MAX_TARGET_FILES = 1000


def put(target: str, data: bytes) -> None:
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def configs() -> list[bytes]:
    out = []
    readme = (REPO / "README.md").read_text()
    for block in re.findall(r"```json\n(.*?)```", readme, re.S):
        out.append(block.encode())
    try:
        import yaml  # PyYAML: installed by the Makefile's deps-python
        y = REPO / "examples" / "serve" / "barbican.yaml"
        if y.exists():
            doc = yaml.safe_load(y.read_text())
            out.append(json.dumps(doc.get("policy", doc) if isinstance(doc, dict) else doc).encode())
    except ImportError:
        pass
    routes = [
        {"match": {"path_prefix": "/outpost.goauthentik.io/"}, "policy": "bypass"},
        {"match": {"path_prefix": "/admin/"}, "policy": "protected", "require_groups": ["admins"]},
        {"match": {"path_regex": "/v[0-9]+/.*", "methods": ["GET"]}, "policy": "api",
         "require_scopes": ["read"]},
        {"match": {"host": "*.lan", "headers": ["x-key"]}, "policy": "deny"},
    ]
    fa = {"session": {"mode": "forward_auth",
                      "forward_auth": {"dialect": "authentik", "cluster": "authentik"},
                      "cache": {"ttl_s": 60, "stale_grace_s": 120, "max_entries": 1000}},
          "jwt": {"providers": [{"issuer": "https://auth.lan/application/o/app/", "audiences": ["api"],
                                 "jwks": {"uri": "http://auth.lan/jwks/", "cluster": "authentik"}}]},
          "routes": routes, "default_policy": "deny", "trusted_proxies": ["10.0.0.0/8"],
          "limits": {"max_path_bytes": 4096}}
    out.append(json.dumps(fa).encode())
    for d in ("authelia", "oauth2-proxy"):
        c = json.loads(json.dumps(fa))
        c["session"]["forward_auth"]["dialect"] = d
        out.append(json.dumps(c).encode())
    custom = json.loads(json.dumps(fa))
    custom["session"]["forward_auth"] = {"dialect": "custom", "cluster": "idp", "path": "/auth",
                                         "copy_headers": ["x-user", "x-id-*"], "groups_header": "x-groups",
                                         "success_statuses": [200, 204]}
    out.append(json.dumps(custom).encode())
    out.append(json.dumps({
        "introspection": {"cluster": "idp", "path": "/introspect", "client_id": "c",
                          "client_secret": {"env": "SECRET"}},
        "routes": [{"match": {"path_prefix": "/"}, "policy": "api", "accept": ["introspection"]}]}).encode())
    out.append(json.dumps({
        "session": {"mode": "oidc", "oidc": {
            "issuer": "http://idp.test", "client_id": "barbican", "client_secret": {"file": "/s.ok"},
            "authorization_endpoint": "http://idp.test/auth", "token_endpoint": "http://idp.test/token",
            "cluster": "idp", "redirect_uri": "https://app.lan/.barbican/callback",
            "secrets": ["0123456789abcdef0123456789abcdef"], "jwks": {"cluster": "idp"}}},
        "routes": routes[:2], "default_policy": "protected"}).encode())
    out += [b"{}", b'{"routes": [{"match": {"path_regex": "(("}, "policy": "bypass"}]}',
            b'{"limits": {"max_path_bytes": 1, "bogus": 2}}', b"[]", b'{"a":' * 64]
    return out


def paths() -> list[bytes]:
    src = (REPO / "src" / "route.rs").read_text()
    tests = src[src.find("mod tests"):]
    lits = set(re.findall(r'"((?:[^"\\]|\\.)*)"', tests))
    out = []
    for lit in sorted(lits):
        try:
            s = json.loads(f'"{lit}"') if "\\u{" not in lit else lit
        except json.JSONDecodeError:
            continue
        if s.startswith("/") or s in ("api", "*"):
            out.append(s.encode())
    out += [b"/api/../admin\napp.lan", b"/;x/admin/\nA.LAN:80", b"/v1/users/x?y=1\n[::1]:8080"]
    return out


EC = {"kty": "EC", "crv": "P-256", "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
      "y": "4Etl6SRW2YilurMyX4QdlpYc7KTOTQtEBjd4Ow-Yq4c", "use": "sig", "kid": "1"}
OKP = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"}


def key_sets() -> list[bytes]:
    docs = [
        {"keys": [EC, OKP]},
        {"keys": [dict(EC, alg="ES256"), dict(OKP, alg="EdDSA", use="sig")]},
        {"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB" * 86, "e": "AQAB", "alg": "RS256"}]},
        {"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]},
        {"keys": []}, {}, {"keys": "x"}, {"keys": [dict(EC, alg="RS256")]},
    ]
    return [json.dumps(d).encode() for d in docs] + [b"not json", b"[]"]


def introspections() -> list[bytes]:
    docs = [
        {"active": True, "client_id": "l238j323ds-23ij4", "username": "jdoe", "scope": "read write dolphin",
         "sub": "Z5O3upPC88QrAjx00dis", "aud": "https://protected.example.net/resource",
         "iss": "https://server.example.com/", "exp": 1419356238, "iat": 1419350238,
         "extension_field": "twenty-seven"},
        {"active": True, "scope": "openid profile", "client_id": "app", "exp": 1700000600.5,
         "preferred_username": "akadmin", "groups": ["authentik Admins"], "aud": ["app", "api"]},
        {"active": True, "sub": "u", "cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}},
        {"active": False}, {"active": "true"}, {"active": True, "exp": -1}, {"active": True, "roles": "admin"},
    ]
    # The first byte picks status and groups claim (fuzz_targets/introspection.rs): 0 = 200, "groups".
    return [b"\x00" + json.dumps(d).encode() for d in docs] + [b"\xfa{}", b"\x01" + b"[" * 200]


def merge(target: str, binary: Path) -> None:
    """Minimize seeds + the working corpus into the seeds (libFuzzer -merge=1), bounded in size."""
    seeds = FUZZ / "corpus" / target
    work = FUZZ / "target" / "work" / target
    if not work.is_dir():
        return
    seeds.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(binary), "-merge=1", "-timeout=10", tmp, str(seeds), str(work)],
                       check=True, capture_output=True, timeout=900)
        files = sorted(Path(tmp).iterdir(), key=lambda p: p.stat().st_size)
        for f in seeds.iterdir():
            f.unlink()
        total = 0
        for n, f in enumerate(files):
            total += f.stat().st_size
            if total > MAX_TARGET_BYTES or n >= MAX_TARGET_FILES:
                break
            (seeds / f.name).write_bytes(f.read_bytes())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--merge", action="store_true")
    a = ap.parse_args()
    if a.merge:
        sys.path.insert(0, str(FUZZ))
        import run
        for t in run.TARGETS:
            merge(t, run.BIN / t)
    # The test vectors always stay, whatever the minimization kept.
    for data in configs():
        put("config", data)
    for data in paths():
        put("path_route", data)
    for data in key_sets():
        put("jwks", data)
    for data in introspections():
        put("introspection", data)
    total = sum(f.stat().st_size for f in (FUZZ / "corpus").rglob("*") if f.is_file())
    n = sum(1 for f in (FUZZ / "corpus").rglob("*") if f.is_file())
    print(f"{n} seed files, {total} bytes under fuzz/corpus/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
