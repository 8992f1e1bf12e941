"""A plugin configuration Barbican does not accept must stop Envoy: `on_configure` fails,
`envoy --mode validate` exits non-zero, and a normal start exits instead of serving
(failure_policy FAIL_CLOSED; DESIGN.md §5). Unknown fields are errors at every level."""

from __future__ import annotations

import copy
import json

import pytest

import harness as H


def mutated(fn) -> dict:
    cfg = copy.deepcopy(H.DEFAULT_PLUGIN_CONFIG)
    fn(cfg)
    return cfg


BAD_CONFIGS = {
    "unknown_top_level_field": mutated(lambda c: c.__setitem__("sesion", {})),
    "unknown_session_field": mutated(lambda c: c["session"].__setitem__("timeout", 5)),
    "unknown_forward_auth_field": mutated(
        lambda c: c["session"]["forward_auth"].__setitem__("dialekt", "authentik")),
    "unknown_cache_field": mutated(lambda c: c["session"]["cache"].__setitem__("ttl", 5)),
    "unknown_route_field": mutated(lambda c: c["routes"][1].__setitem__("polcy", "bypass")),
    "unknown_match_field": mutated(
        lambda c: c["routes"][1]["match"].__setitem__("path_prefx", "/x/")),
    "unknown_policy": mutated(lambda c: c["routes"][1].__setitem__("policy", "allow")),
    "unknown_default_policy": mutated(lambda c: c.__setitem__("default_policy", "open")),
    "bad_path_regex": mutated(
        lambda c: c["routes"].insert(0, {"match": {"path_regex": "(unclosed"}, "policy": "deny"})),
    "wrong_type": mutated(lambda c: c["session"]["cache"].__setitem__("ttl_s", "five")),
    "unknown_dialect": mutated(
        lambda c: c["session"]["forward_auth"].__setitem__("dialect", "keycloak")),
}

NOT_JSON = ['{"session": ', "", "[]"]


def validate(plugin_config, wasm) -> tuple[int, str]:
    cfg = H.render_bootstrap(http_filters=[H.wasm_filter(plugin_config, wasm)],
                             clusters={"outpost": 1, "upstream": 2})
    return H.envoy_validate(H.write_bootstrap(cfg))


def test_default_config_validates(wasm):
    rc, out = validate(H.DEFAULT_PLUGIN_CONFIG, wasm)
    assert rc == 0, out[-3000:]


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_fails_validation(wasm, name):
    rc, out = validate(BAD_CONFIGS[name], wasm)
    assert rc != 0, f"{name} accepted:\n{out[-2000:]}"


@pytest.mark.parametrize("text", NOT_JSON, ids=["truncated", "empty", "array"])
def test_non_json_config_fails_validation(wasm, text):
    rc, out = validate(text, wasm)
    assert rc != 0, f"{text!r} accepted:\n{out[-2000:]}"


def test_config_error_names_the_field(wasm):
    rc, out = validate(BAD_CONFIGS["unknown_match_field"], wasm)
    assert rc != 0
    assert "path_prefx" in out, out[-2000:]


def test_envoy_refuses_to_start_with_a_bad_config(wasm, outpost, upstream):
    with pytest.raises(H.ProcessExited) as ei:
        env = H.start_envoy(BAD_CONFIGS["unknown_route_field"], wasm,
                            clusters={"outpost": outpost.port, "upstream": upstream.port},
                            ready_timeout=30)
        env.stop()  # pragma: no cover - only reached when the bad config was accepted
    assert ei.value.rc not in (0, None), ei.value.log


# A key set read from a file: fine for Traefik (mounted) and the CLI, impossible in Envoy's
# wasm VMs (no filesystem) — refused when the filter starts, naming the field.
FILE_JWKS_CONFIG = {
    "jwt": {"providers": [{"issuer": "https://idp.test/", "audiences": ["api"],
                           "jwks": {"file": "/etc/barbican/jwks.json"}}]},
    "routes": [{"match": {"path_prefix": "/"}, "policy": "api"}],
}


def test_envoy_refuses_a_jwks_file(wasm):
    rc, out = validate(FILE_JWKS_CONFIG, wasm)
    assert rc != 0, out[-2000:]
    assert "jwt.providers[0].jwks.file: Envoy gives wasm filters no filesystem" in out, \
        out[-2000:]
