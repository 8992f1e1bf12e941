"""Every config block in docs/serve-proxies.md is an example file under examples/serve/,
whole and verbatim (its first line names it): the doc shows only what
tests/e2e/test_serve_proxies.py runs in real Caddy, nginx and Traefik. A block that drifted
from its file, names none, or an example the doc forgot, fails here.
"""

from __future__ import annotations

import re

import pytest

import harness as H
from test_kubernetes_doc import FENCE

DOC = H.REPO / "docs" / "serve-proxies.md"
EXAMPLES = ("Caddyfile", "nginx.conf", "traefik.yml", "traefik-dynamic.yml", "barbican.yaml",
            "barbican-oidc.yaml")


def config_blocks() -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang != "sh"]


def test_only_tagged_config_blocks():
    langs = {lang for lang, _ in FENCE.findall(DOC.read_text())}
    assert langs <= {"yaml", "caddyfile", "nginx", "sh"}, langs


def test_every_example_is_shown():
    named = [b.partition("\n")[0] for b in config_blocks()]
    assert sorted(named) == sorted(f"# examples/serve/{n}" for n in EXAMPLES), named


@pytest.mark.parametrize("i", range(len(config_blocks())))
def test_block_is_its_file(i):
    block = config_blocks()[i].rstrip("\n")
    first = block.partition("\n")[0]
    m = re.fullmatch(r"# (examples/serve/[\w.-]+)", first)
    assert m, f"block {i} does not name its file on its first line: {first!r}"
    path = H.REPO / m.group(1)
    assert path.is_file(), f"block {i}: {m.group(1)} does not exist"
    assert block == path.read_text().rstrip("\n"), f"block {i} differs from {m.group(1)}"
