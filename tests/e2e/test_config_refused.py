"""A plugin configuration Barbican does not accept must stop Envoy: `on_configure` fails,
`envoy --mode validate` exits non-zero, and a normal start exits instead of serving
(failure_policy FAIL_CLOSED; DESIGN.md §5). Unknown fields are errors at every level."""

from __future__ import annotations

import copy
import json
import subprocess

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


def oidc_secret_config(secret) -> dict:
    """A code-flow OIDC session whose secret is `secret` (inline, or named by env/file)."""
    return {
        "session": {"mode": "oidc", "oidc": {
            "issuer": "http://idp.test", "client_id": "c",
            "authorization_endpoint": "http://idp.test/auth",
            "token_endpoint": "http://idp.test/token", "cluster": "outpost",
            "jwks": {"uri": "http://idp.test/jwks", "cluster": "outpost"},
            "redirect_uri": "http://app.test/.barbican/callback",
            "cookie": {"secure": False}, "secrets": [secret]}},
        "routes": [{"match": {"path_prefix": "/"}, "policy": "protected"}],
    }


def validate_with_env(plugin_config, wasm, vm_env) -> tuple[int, str]:
    cfg = H.render_bootstrap(http_filters=[H.wasm_filter(plugin_config, wasm, vm_env=vm_env)],
                             clusters={"outpost": 1, "upstream": 2})
    return H.envoy_validate(H.write_bootstrap(cfg))


def test_envoy_reads_secrets_from_the_vm_environment_and_refuses_what_it_cannot_read(wasm):
    env = {"key_values": {"BARBICAN_SESSION_SECRET": "s" * 40}}
    rc, out = validate_with_env(oidc_secret_config({"env": "BARBICAN_SESSION_SECRET"}), wasm, env)
    assert rc == 0, out[-3000:]
    rc, out = validate_with_env(oidc_secret_config({"env": "BARBICAN_UNSET"}), wasm, env)
    assert rc != 0
    assert ("session.oidc.secrets[0]: environment variable BARBICAN_UNSET is not set (or not "
            "UTF-8 text) in the "
            "wasm VM") in out, out[-2000:]
    rc, out = validate_with_env(oidc_secret_config({"file": "/run/secrets/s"}), wasm, env)
    assert rc != 0
    assert ("session.oidc.secrets[0]: file /run/secrets/s: Envoy's wasm VMs cannot read files"
            in out), out[-2000:]
    # Too short once read: the same rule as inline.
    rc, out = validate_with_env(oidc_secret_config({"env": "SHORT"}), wasm,
                                {"key_values": {"SHORT": "x" * 8}})
    assert rc != 0
    assert "session.oidc.secrets[0]: is 8 bytes; at least 32" in out, out[-2000:]
    assert "x" * 8 not in out


def test_cli_check_reads_named_secrets_from_its_environment_and_files(tmp_path, monkeypatch):
    cli = H.REPO / "dist" / "barbican"
    if not cli.is_file():
        pytest.fail("dist/barbican is missing: make build", pytrace=False)
    secret_file = tmp_path / "previous"
    cfg = oidc_secret_config({"env": "BARBICAN_CLI_SECRET"})
    cfg["session"]["oidc"]["secrets"].append({"file": str(secret_file)})
    path = tmp_path / "barbican.json"
    path.write_text(json.dumps(cfg))

    def check() -> tuple[int, str]:
        p = subprocess.run([str(cli), "check", str(path)], capture_output=True, text=True,
                           timeout=30)
        return p.returncode, p.stdout + p.stderr

    monkeypatch.delenv("BARBICAN_CLI_SECRET", raising=False)
    rc, out = check()
    assert rc == 1, out
    assert "session.oidc.secrets[0]: environment variable BARBICAN_CLI_SECRET" in out, out
    assert f"session.oidc.secrets[1]: file {secret_file}: cannot read" in out, out
    monkeypatch.setenv("BARBICAN_CLI_SECRET", "c" * 40)
    secret_file.write_text("p" * 40 + "\n")
    rc, out = check()
    assert rc == 0 and out.strip().endswith(": ok"), out
    assert "c" * 40 not in out and "p" * 40 not in out
