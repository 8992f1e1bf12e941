"""Envoy's native JWT filter (`envoy.filters.http.jwt_authn`) as a reference to compare
Barbican with: render its configuration and start an Envoy that runs it.

    provider = remote_provider(issuer, audiences, jwks_uri, cluster="idp", clock_skew_s=5)
    env = start_jwt_authn_envoy({"idp": provider}, [require("/", "idp")],
                                clusters={"idp": idp.port, "upstream": upstream.port})

The bootstrap is harness.render_bootstrap's (the same hardened HTTP connection manager as
Barbican's Envoys); only the HTTP filter differs. Routes: everything to the `upstream`
cluster.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import harness as H

JWT_AUTHN_NAME = "envoy.filters.http.jwt_authn"
JWT_AUTHN_TYPE = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"

# Where Barbican looks for a token on an `api` route without `token_query`/`token_cookie`.
# jwt_authn's own default (no from_headers/from_params) is `Authorization: Bearer <token>`
# AND the `access_token` query parameter.
BEARER_HEADER = [{"name": "Authorization", "value_prefix": "Bearer "}]


def _provider(issuer: str, audiences: Sequence[str], *, clock_skew_s: int, forward: bool,
              from_headers: Sequence[Mapping[str, str]] | None,
              from_params: Sequence[str] | None, extra: Mapping[str, Any]) -> dict:
    p: dict[str, Any] = {
        "issuer": issuer,
        "audiences": list(audiences),
        "forward": forward,
        "clock_skew_seconds": clock_skew_s,
    }
    if from_headers is not None:
        p["from_headers"] = [dict(h) for h in from_headers]
    if from_params is not None:
        p["from_params"] = list(from_params)
    p.update(extra)
    return p


def remote_provider(issuer: str, audiences: Sequence[str], jwks_uri: str, *,
                    cluster: str, clock_skew_s: int = 60, cache_duration_s: int = 600,
                    timeout_s: float = 2.0, forward: bool = True,
                    from_headers: Sequence[Mapping[str, str]] | None = BEARER_HEADER,
                    from_params: Sequence[str] | None = None, **extra: Any) -> dict:
    """A JwtProvider whose keys are fetched from `jwks_uri` through `cluster` (on the first
    request that needs them, then cached for `cache_duration_s`). `from_headers=None` keeps
    jwt_authn's default token locations."""
    p = _provider(issuer, audiences, clock_skew_s=clock_skew_s, forward=forward,
                  from_headers=from_headers, from_params=from_params, extra=extra)
    p["remote_jwks"] = {
        "http_uri": {"uri": jwks_uri, "cluster": cluster, "timeout": f"{timeout_s}s"},
        "cache_duration": f"{cache_duration_s}s",
    }
    return p


def local_provider(issuer: str, audiences: Sequence[str], jwks: Mapping[str, Any] | str, *,
                   clock_skew_s: int = 60, forward: bool = True,
                   from_headers: Sequence[Mapping[str, str]] | None = BEARER_HEADER,
                   from_params: Sequence[str] | None = None, **extra: Any) -> dict:
    """A JwtProvider with an inline key set (`local_jwks.inline_string`)."""
    p = _provider(issuer, audiences, clock_skew_s=clock_skew_s, forward=forward,
                  from_headers=from_headers, from_params=from_params, extra=extra)
    p["local_jwks"] = {"inline_string": jwks if isinstance(jwks, str) else json.dumps(jwks)}
    return p


def require(prefix: str, *providers: str) -> dict:
    """A rule: requests under `prefix` need a token valid for one of `providers`
    (one name: `provider_name`; several: `requires_any`)."""
    if not providers:
        raise ValueError("a rule needs at least one provider")
    if len(providers) == 1:
        requires: dict[str, Any] = {"provider_name": providers[0]}
    else:
        requires = {"requires_any": {"requirements": [{"provider_name": p} for p in providers]}}
    return {"match": {"prefix": prefix}, "requires": requires}


def jwt_authn_filter(providers: Mapping[str, Mapping[str, Any]],
                     rules: Sequence[Mapping[str, Any]]) -> dict:
    return {
        "name": JWT_AUTHN_NAME,
        "typed_config": {
            "@type": JWT_AUTHN_TYPE,
            "providers": {name: dict(p) for name, p in providers.items()},
            "rules": [dict(r) for r in rules],
        },
    }


def start_jwt_authn_envoy(providers: Mapping[str, Mapping[str, Any]],
                          rules: Sequence[Mapping[str, Any]], clusters: Mapping[str, int], *,
                          upstream_cluster: str = "upstream", concurrency: int = 1,
                          log_level: str = "warning", ready_timeout: float = 30.0,
                          hardened: bool = True,
                          drop_underscore_headers: bool = True) -> H.EnvoyProc:
    """An Envoy with jwt_authn then the router; every path goes to `upstream_cluster`."""
    cfg = H.render_bootstrap(
        http_filters=[jwt_authn_filter(providers, rules)], clusters=clusters,
        routes=[{"match": {"prefix": "/"}, "route": {"cluster": upstream_cluster}}],
        hardened=hardened, drop_underscore_headers=drop_underscore_headers)
    return H.start_envoy_config(cfg, concurrency=concurrency, log_level=log_level,
                                ready_timeout=ready_timeout, name="envoy-jwt_authn")
