"""Hostile requests through both wasm hosts, real Envoy and real Traefik (issue #14, item 5).

Each request gets a clear 4xx or the normal decision for its route: never a trap, never a 5xx
from Barbican, never an upstream request the rules forbid. Where the proxy itself refuses
the request before any filter runs (Envoy: 60 KiB of headers, 100 headers, HTTP/1.0 without
`Host`; Go's server under Traefik: 1 MiB of headers), that refusal is the answer asserted,
since it is what a client meets. After every case the same worker must still serve
(`two_hosts.Host.still_serves`), and no trap may show in either proxy's log.

Figures at the time of writing (2026-12-07, Envoy 1.40, Traefik 3.7.15): every case below
gives the listed status on both hosts; 0 traps, 0 upstream requests on denied routes.
"""

from __future__ import annotations

import json
import socket

import pytest

import harness as H
from two_hosts import AUDIENCE, PATHS, claims, host, sign, token  # noqa: F401  (host: fixture)


def bearer(t: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {t}")]


HEAD = {"alg": "RS256", "typ": "JWT", "kid": "k1"}


def raw_claims(extra: str, drop: str | None = None) -> str:
    """The usual claims as JSON text with `extra` spliced in (JSON a dict cannot hold)."""
    c = claims()
    if drop:
        c.pop(drop)
    return json.dumps(c)[:-1] + ", " + extra + "}"


# name -> (path, headers, {host: status} or one status for both, reaches upstream)
CASES = {
    # Sizes and counts.
    "header_70k": (PATHS["bypass"], [("X-Big", "a" * 70_000)], 431, False),
    "headers_1000": (PATHS["bypass"], [(f"X-H{i}", "v") for i in range(1000)], 431, False),
    # 10k cookies: over Envoy's 60 KiB; under Go's 1 MiB, so Barbican reads them all on
    # Traefik and finds no credential.
    "cookies_10k": (PATHS["protected"],
                    [("Cookie", "; ".join(f"c{i}=v" for i in range(10_000)))],
                    {"envoy": 431, "traefik": 401}, False),
    "path_at_limit": (PATHS["bypass"] + "a" * (8192 - len(PATHS["bypass"])), [], 200, True),
    "path_over_limit": (PATHS["bypass"] + "a" * (8193 - len(PATHS["bypass"])), [], 414, False),
    # `;` parameters that change which rule matches (dropped: the /api/ bypass; kept, as
    # both proxies route: the protected default) are refused, never guessed.
    "params_change_the_rule": ("/api;x/secret", [], 400, False),
    "params_keep_the_rule": ("/api/x;jsessionid=1", bearer(token()), 200, True),
    # Duplicates: two credentials are never judged by the first one alone.
    "authorization_good_then_bad": (PATHS["api"], bearer(token()) + bearer("garbage"), 401,
                                    False),
    "authorization_bad_then_good": (PATHS["api"], bearer("garbage") + bearer(token()), 401,
                                    False),
    "two_cookie_headers": (PATHS["protected"], [("Cookie", "a=1"), ("Cookie", "b=2")], 401,
                           False),
    # Bytes the proxies refuse before any filter.
    "nul_in_value": (PATHS["bypass"], [("X-N", "a\x00b")], 400, False),
    "control_in_value": (PATHS["bypass"], [("X-N", "a\x01b")], 400, False),
    "nul_in_path": (PATHS["bypass"] + "\x00y", [], 400, False),
    # Tokens built to hurt the parser or the clock.
    "nested_json_5000": (PATHS["api"], bearer(sign(HEAD, raw_claims(
        '"x": ' + "[" * 5000 + "]" * 5000))), 401, False),
    # 10k audiences: a 120 KB token, over Envoy's header limit and Barbican's token limit.
    "aud_10k": (PATHS["api"], bearer(token(aud=[f"a{i}" for i in range(10_000)] + [AUDIENCE])),
                {"envoy": 431, "traefik": 401}, False),
    "aud_300_with_ours": (PATHS["api"], bearer(token(aud=[f"a{i}" for i in range(300)]
                                                    + [AUDIENCE])), 200, True),
    "exp_1e309": (PATHS["api"], bearer(sign(HEAD, raw_claims('"exp": 1e309', drop="exp"))),
                  401, False),
    "exp_minus_1": (PATHS["api"], bearer(token(exp=-1)), 401, False),
    "exp_float_1e300": (PATHS["api"], bearer(token(exp=1e300)), 401, False),
    # 2^63 s is far in the future and a valid NumericDate: accepted, and its cache lifetime
    # must not wrap (the next case asks again with the same token).
    "exp_2_pow_63": (PATHS["api"], bearer(token(exp=2**63)), 200, True),
    "exp_2_pow_64": (PATHS["api"], bearer(token(exp=2**64)), 401, False),
    "kid_10k": (PATHS["api"], bearer(sign({**HEAD, "kid": "k" * 10_240}, claims())), 401,
                False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_gets_a_clear_answer(host, name):
    path, headers, want, upstream = CASES[name]
    want = want[host.name] if isinstance(want, dict) else want
    r = host.get(path, headers)
    assert (r.status, r.from_upstream) == (want, upstream), (host.name, name, r)
    assert b"wasm" not in r.body.lower() and b"panic" not in r.body.lower(), r
    host.still_serves()


def test_far_future_exp_stays_cached_and_valid(host):
    t = token(exp=2**63)
    for _ in range(3):
        r = host.get(PATHS["api"], bearer(t))
        assert r.status == 200 and r.upstream_header("x-authentik-username") == ["alice"], r


def test_absolute_form_target_is_decided_on_the_authority_the_upstream_sees(host):
    """RFC 9112 §3.2.2: with an absolute-form target the proxy takes the authority from the
    target and ignores Host. Barbican must judge that same authority."""
    r = host.get("http://admin.app.test/public/x", host=H.DEFAULT_HOST)
    if host.name == "envoy":
        assert r.status == 403 and not r.from_upstream, r
    else:
        assert r.status == 404 and not r.from_upstream, r  # Traefik's router: only app.test
    r = host.get(f"http://{H.DEFAULT_HOST}/public/x", host="admin.app.test")
    assert r.status == 200 and r.from_upstream, r
    assert r.upstream_header("host") == [H.DEFAULT_HOST], r
    host.still_serves()


@pytest.mark.parametrize("kind,want", [("protected", 401), ("deny", 403), ("api", 401)])
def test_trace_gets_the_route_decision(host, kind, want):
    r = H.request(host.port, PATHS[kind], "TRACE")
    assert r.status == want and not r.from_upstream, r
    host.still_serves()


def test_connect_is_refused(host):
    r = H.request(host.port, f"{H.DEFAULT_HOST}:443", "CONNECT")
    assert r.status in (400, 403, 404, 405, 501) and not r.from_upstream, r
    host.still_serves()


def _status_line(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while b"\r\n" not in out:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    return out.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("kind", ["bypass", "protected", "deny"])
def test_http10_without_host_never_reaches_the_upstream(host, kind):
    line = _status_line(host.port, f"GET {PATHS[kind]} HTTP/1.0\r\n\r\n".encode())
    # Envoy refuses HTTP/1.0 unless configured (426); Traefik routes by Host (404).
    want = {"envoy": b" 426 ", "traefik": b" 404 "}[host.name]
    assert want in line, (host.name, line)
    host.still_serves()


def test_no_trap_in_the_log(host):
    host.still_serves()
    assert host.trapped() == [], host.proc.log_text()[-3000:]
