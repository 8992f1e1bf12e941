"""Every example under envoy/ passes `envoy --mode validate` from the repository root
(which loads dist/barbican.wasm and runs Barbican's on_configure on the example's config)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness as H

EXAMPLES = sorted((H.REPO / "envoy").glob("*.yaml"))


def test_there_are_examples():
    assert EXAMPLES, "no envoy/*.yaml examples"


# What examples read from Envoy's environment (vm_config.environment_variables.host_env_keys):
# placeholders here, the operator's secrets in production.
EXAMPLE_ENV = {"BARBICAN_SESSION_SECRET": "placeholder-session-secret-0123456789abcdef",
               "BARBICAN_CLIENT_SECRET": "placeholder-client-secret"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(example: Path, tmp_path: Path, monkeypatch):
    for k, v in EXAMPLE_ENV.items():
        monkeypatch.setenv(k, v)
    dist = H.REPO / "dist" / "barbican.wasm"
    cfg = example
    if not dist.is_file():
        env = os.environ.get("BARBICAN_WASM")
        if not env or not Path(env).is_file():
            pytest.fail(f"{dist} is missing (run `make build`); the examples load it by that "
                        "relative path", pytrace=False)
        # validate a copy that points at $BARBICAN_WASM instead
        text = example.read_text().replace("dist/barbican.wasm", str(Path(env).resolve()))
        cfg = tmp_path / example.name
        cfg.write_text(text)
    rc, out = H.envoy_validate(cfg, cwd=H.REPO)
    assert rc == 0, f"{example.name}:\n{out[-3000:]}"
