#!/usr/bin/env python3
"""Pin the shipped manifests to the image of dist/barbican.wasm: rewrite `sha256:` in
deploy/istio/wasmplugin*.yaml and deploy/envoy-gateway/envoyextensionpolicy*.yaml (and the
copies of them in docs/kubernetes.md) to the digest of the image `make oci` builds from that
wasm.

Istio's agent compares a WasmPlugin's `sha256` with the OCI *manifest* digest for `oci://`
URLs (istio/istio pkg/wasm/cache.go getOrFetch: for the oci scheme the checksum is
PrepareFetch's img.Digest(), imagefetcher.go; only http(s) URLs are checked against the
module's own sha256), so that is the value pinned. tools/oci.py builds reproducibly, so the
digest is a function of the wasm alone: it is computed here from the wasm (never from a
dist/oci that may be older than it), and anyone can recompute it from a released wasm.

    python3 tools/pin_deploy.py                  # the image digest of dist/barbican.wasm
    python3 tools/pin_deploy.py sha256:<hex>     # or given
    python3 tools/pin_deploy.py --wasm FILE      # or of another module
    python3 tools/pin_deploy.py --check          # exit 1 when a manifest is not pinned to it
    python3 tools/pin_deploy.py --if-built       # nothing (exit 0) when the wasm is absent
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Envoy Gateway's image fetcher is Istio's, copied (envoyproxy/gateway internal/wasm): its
# EnvoyExtensionPolicy `wasm[].code.image.sha256` is the same manifest digest.
FILES = sorted((REPO / "deploy" / "istio").glob("wasmplugin*.yaml")) + sorted(
    (REPO / "deploy" / "envoy-gateway").glob("envoyextensionpolicy*.yaml"))
DOCS = [REPO / "docs" / "kubernetes.md"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import oci  # noqa: E402  (tools/oci.py)

LINE = re.compile(r'^(\s+sha256: )"?[0-9a-f]*"?\s*$', re.M)


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wasm = REPO / "dist" / "barbican.wasm"
    if "--wasm" in argv:
        i = argv.index("--wasm")
        wasm = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if "--if-built" in argv and not wasm.is_file():
        print(f"pin: {wasm} not built (make wasm); manifests keep their sha256")
        return 0
    args = [a for a in argv if a not in ("--check", "--if-built")]
    if not args and not wasm.is_file():
        sys.exit(f"pin: {wasm} missing (make wasm)")
    digest = args[0] if args else oci.image_digest(wasm)
    hexd = digest.split(":", 1)[-1]
    if not re.fullmatch(r"[0-9a-f]{64}", hexd):
        sys.exit(f"not a sha256 digest: {digest}")
    stale = []
    for f in FILES:
        text = f.read_text()
        if len(LINE.findall(text)) != 1:
            sys.exit(f"{f.relative_to(REPO)}: expected exactly one sha256 line")
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
