"""pytest fixtures for Barbican's end-to-end tests (real Envoy, real test servers).

Run from the repository root:  python3 -m pytest tests/e2e -q
The wasm module comes from $BARBICAN_WASM (default dist/barbican.wasm). When it is missing,
every test that needs it fails with a message saying so: nothing is skipped silently.
Set BARBICAN_E2E_KEEP=1 to keep the temp directory (Envoy logs, bootstraps) after the run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


@pytest.fixture(scope="session")
def wasm() -> Path:
    message = None
    try:
        return harness.require_wasm()
    except harness.WasmMissing as e:
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def outpost():
    op = harness.start_outpost()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture(scope="module")
def upstream():
    up = harness.start_upstream()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def idp():
    """The test OpenID provider (servers/oidc: npm oidc-provider), one per module."""
    import idp as I
    p = I.start_idp()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def one_key_idp():
    """The test OpenID provider with a single key generation (the JWT corpus tests)."""
    import idp as I
    p = I.start_idp(generations=1)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def barbican(wasm, outpost, upstream):
    """Envoy + Barbican with the default plugin configuration and the hardened HCM."""
    env = harness.start_envoy(harness.default_plugin_config(), wasm,
                              clusters={"outpost": outpost.port, "upstream": upstream.port})
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="module")
def barbican_underscores(wasm, outpost, upstream):
    """Same, but without headers_with_underscores_action: DROP_HEADER (Envoy's default
    ALLOW), so only Barbican stands between `x_authentik_*` and the upstream."""
    env = harness.start_envoy(harness.default_plugin_config(), wasm,
                              clusters={"outpost": outpost.port, "upstream": upstream.port},
                              drop_underscore_headers=False)
    try:
        yield env
    finally:
        env.stop()


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("BARBICAN_E2E_KEEP"):
        root = harness._TMP_ROOT
        if root:
            sys.stderr.write(f"\nbarbican e2e: logs kept in {root}\n")
        return
    if session.testsfailed:
        root = harness._TMP_ROOT
        if root:
            sys.stderr.write(f"\nbarbican e2e: failures; logs kept in {root}\n")
        return
    harness.cleanup_tmp_root()
