"""Every YAML block in docs/kubernetes.md is a file under deploy/ (or one `---` document of
one), named by the block's first line (`# deploy/istio/wasmplugin.yaml`): the doc shows only
what tests/e2e/test_k8s_manifests.py validates and the end-to-end tests run. A block that
drifted from its file, or names none, fails here.
"""

from __future__ import annotations

import re

import pytest

import harness as H

DOC = H.REPO / "docs" / "kubernetes.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def yaml_blocks() -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text()) if lang in ("yaml", "yml")]


def documents(text: str) -> list[str]:
    return [d.strip("\n") for d in re.split(r"(?m)^---\s*$", text) if d.strip()]


def test_doc_has_yaml_blocks():
    assert len(yaml_blocks()) >= 8


def test_no_untagged_config_blocks():
    # Config shown in any other fence language would dodge the check below.
    langs = {lang for lang, _ in FENCE.findall(DOC.read_text())}
    assert langs <= {"yaml", "sh"}, langs


@pytest.mark.parametrize("i", range(len(yaml_blocks())))
def test_block_is_a_deploy_file(i):
    block = yaml_blocks()[i].rstrip("\n")
    first, _, rest = block.partition("\n")
    m = re.fullmatch(r"# (deploy/[\w./-]+\.ya?ml)", first.strip())
    assert m, f"block {i} does not name its file on its first line: {first!r}"
    path = H.REPO / m.group(1)
    assert path.is_file(), f"block {i}: {m.group(1)} does not exist"
    text = path.read_text().rstrip("\n")
    if block == text:
        return
    docs = documents(text)
    # The first document carries the file's naming comment; the others get it in the doc.
    candidates = [docs[0]] + [f"{first}\n{d}" for d in docs[1:]] + \
        [d for d in docs if d.startswith(first)]
    assert block in candidates or rest.strip("\n") in [d.strip("\n") for d in docs], (
        f"block {i} differs from {m.group(1)} (and from each of its documents)")
