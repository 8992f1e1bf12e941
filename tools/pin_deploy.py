#!/usr/bin/env python3
"""Pin the shipped manifests to the image `make oci` built: rewrite `sha256:` in
deploy/istio/wasmplugin*.yaml (and the copies of them in docs/kubernetes.md) to the image's
manifest digest.

Istio's agent compares a WasmPlugin's `sha256` with the OCI *manifest* digest for `oci://`
URLs (istio/istio pkg/wasm/imagefetcher.go PrepareFetch, cache.go getOrFetch), so that is
the value pinned, not the wasm file's hash.

    python3 tools/pin_deploy.py                  # digest from dist/oci/index.json
    python3 tools/pin_deploy.py sha256:<hex>     # or given
    python3 tools/pin_deploy.py --check          # exit 1 when a manifest is not pinned to it
    python3 tools/pin_deploy.py --if-built       # nothing (exit 0) when dist/oci is absent
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "deploy" / "istio").glob("wasmplugin*.yaml"))
DOCS = [REPO / "docs" / "kubernetes.md"]
LINE = re.compile(r'^(  sha256: )"?[0-9a-f]*"?\s*$', re.M)


def layout_digest() -> str:
    index = json.loads((REPO / "dist" / "oci" / "index.json").read_text())
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        sys.exit(f"dist/oci/index.json: expected one manifest, found {len(manifests)}")
    return manifests[0]["digest"]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    if "--if-built" in argv and not (REPO / "dist" / "oci" / "index.json").is_file():
        print("pin: dist/oci/index.json not built (make oci); manifests keep their sha256")
        return 0
    args = [a for a in argv if a not in ("--check", "--if-built")]
    digest = args[0] if args else layout_digest()
    hexd = digest.split(":", 1)[-1]
    if not re.fullmatch(r"[0-9a-f]{64}", hexd):
        sys.exit(f"not a sha256 digest: {digest}")
    stale = []
    for f in FILES:
        text = f.read_text()
        if len(LINE.findall(text)) != 1:
            sys.exit(f"{f.relative_to(REPO)}: expected exactly one spec.sha256 line")
        new = LINE.sub(lambda m: f'{m.group(1)}"{hexd}"', text)
        if new != text:
            stale.append(str(f.relative_to(REPO)))
            if not check:
                f.write_text(new)
    for f in DOCS:
        if not f.is_file():
            continue
        text = f.read_text()
        new = LINE.sub(lambda m: f'{m.group(1)}"{hexd}"', text)
        if new != text:
            stale.append(str(f.relative_to(REPO)))
            if not check:
                f.write_text(new)
    if check and stale:
        print(f"not pinned to {digest}: {', '.join(stale)} (run `make pin`)", file=sys.stderr)
        return 1
    for s in stale:
        print(f"{s}: sha256 pinned to {hexd}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
