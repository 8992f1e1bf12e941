#!/usr/bin/env python3
"""`make oci`: dist/barbican.wasm as an OCI image layout under dist/oci/, with no daemon.

    python3 tools/oci.py [--wasm dist/barbican.wasm] [--out dist/oci] [--tag 0.1.0]
                         [--push HOST[:PORT]/REPO[:TAG]]

Istio's agent (istio/istio pkg/wasm/imagefetcher.go PrepareFetch, commit 86c9f01f) reads
three shapes of image. This writes the one it tries first for an OCI manifest, the *compat*
variant (solo-io/wasm spec-compat.md): a standard OCI image whose last layer is an
`application/vnd.oci.image.layer.v1.tar+gzip` holding `plugin.wasm`. Any registry, skopeo,
crane or containerd handles it as an ordinary image, and Envoy Gateway's fetcher (a copy of
Istio's) reads it the same way. The *oci* variant needs exactly two layers, one of them a
JSON config shipped as a layer (the retired `wasme` tool's shape), and Docker's manifest type
is for docker-built images.

Reproducible: the image digest depends on the wasm bytes alone. No timestamps (tar mtime 0,
no `created`), tar entry owned by 0:0 with mode 0644, JSON with sorted keys and no spaces,
and the gzip stream written with *stored* deflate blocks (no compression): deflate's output
is not specified across implementations (zlib, zlib-ng, Go), so a compressed layer's digest
would depend on the machine; stored blocks are byte-exact everywhere. The cost is the
layer's size (the wasm's, ~600 KB, instead of ~250 KB), pulled once per gateway.

Istio's WasmPlugin `sha256` is compared with the *manifest* digest for `oci://` URLs
(pkg/wasm/cache.go getOrFetch: dChecksum is PrepareFetch's actualDigest = img.Digest()), so
that digest is the pin (`make pin`); anyone can recompute it from a released wasm with
`python3 tools/oci.py --wasm barbican.wasm --out /tmp/oci`.

`--push` copies the layout with skopeo (`--preserve-digests`: the registry gets the same
manifest bytes, so the pin holds). TLS verification is turned off only for a loopback
registry (127.0.0.1, localhost, [::1]); any other host keeps it on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"  # types.OCILayer
WASM_NAME = "plugin.wasm"  # spec-compat.md; imagefetcher.go extractWasmPluginBinary
WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def tar_one_file(name: str, data: bytes) -> bytes:
    """A ustar archive of one regular file: header, data padded to 512, the two zero blocks
    that end an archive, and nothing after them (no padding to a 10 KiB record)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    header = info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")
    return header + data + b"\0" * (-len(data) % 512) + b"\0" * 1024


def gzip_stored(data: bytes) -> bytes:
    """RFC 1952 gzip of RFC 1951 stored blocks: the same bytes from every implementation."""
    out = bytearray(b"\x1f\x8b\x08\x00" + b"\0\0\0\0" + b"\x00\xff")  # no mtime, OS unknown
    chunks = [data[i:i + 0xFFFF] for i in range(0, len(data), 0xFFFF)] or [b""]
    for i, chunk in enumerate(chunks):
        out += bytes([1 if i == len(chunks) - 1 else 0])  # BFINAL, BTYPE=00
        out += struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk
    out += struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return bytes(out)


@dataclass
class Image:
    """The blobs of one image, by digest, and its manifest."""
    manifest: bytes
    blobs: dict[str, bytes]
    wasm_sha256: str

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def descriptor(media_type: str, blob: bytes) -> dict:
    return {"mediaType": media_type, "digest": sha256(blob), "size": len(blob)}


def build_image(wasm: bytes, *, layer_type: str = LAYER_TYPE) -> Image:
    """The compat-variant image of `wasm` (`layer_type` exists for the tests' broken images)."""
    if not wasm.startswith(WASM_MAGIC):
        raise ValueError("not a wasm module (no \\0asm version 1 header)")
    tar = tar_one_file(WASM_NAME, wasm)
    layer = gzip_stored(tar)
    # An image config as the OCI image spec defines it (os/architecture: Go's names for the
    # target, GOOS=wasip1 GOARCH=wasm); Istio does not read it, registries and tools do.
    config = canonical_json({
        "architecture": "wasm", "os": "wasip1", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    })
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": descriptor(CONFIG_TYPE, config),
        "layers": [descriptor(layer_type, layer)],
    })
    blobs = {sha256(b): b for b in (config, layer, manifest)}
    return Image(manifest, blobs, hashlib.sha256(wasm).hexdigest())


def image_digest(wasm_path: Path) -> str:
    """The manifest digest `make oci` gives this wasm (what a WasmPlugin pins)."""
    return build_image(Path(wasm_path).read_bytes()).digest


def write_layout(image: Image, out: Path, tag: str) -> None:
    """An OCI image layout (image-spec image-layout.md) holding `image` as `tag`, replacing
    what `out` held before (only if it is a layout, or empty)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "oci-layout").is_file():
        raise SystemExit(f"{out}: exists and is not an OCI layout; not replacing it")
    tmp = Path(tempfile.mkdtemp(prefix=".oci-", dir=out.parent))
    blob_dir = tmp / "blobs" / "sha256"
    blob_dir.mkdir(parents=True)
    for digest, data in sorted(image.blobs.items()):
        (blob_dir / digest.split(":", 1)[1]).write_bytes(data)
    (tmp / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    entry = descriptor(MANIFEST_TYPE, image.manifest)
    entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (tmp / "index.json").write_bytes(canonical_json(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
         "manifests": [entry]}))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def cargo_version() -> str:
    m = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text())
    return m.group(1) if m else "latest"


def registry_host(ref: str) -> str:
    """The registry part of HOST[:PORT]/REPO[:TAG] (`[::1]:5000` keeps its brackets)."""
    first = ref.split("/", 1)[0]
    if first.startswith("["):
        return first[:first.index("]") + 1]
    return first.rsplit(":", 1)[0] if ":" in first else first


def tls_args(ref: str) -> list[str]:
    """A loopback registry (a test or a port-forward) may speak plain HTTP; others keep TLS."""
    return ["--dest-tls-verify=false"] if registry_host(ref).lower() in LOOPBACK else []


def push(layout: Path, tag: str, ref: str, *, skopeo: str = "skopeo",
         timeout: float = 120.0) -> str:
    """`skopeo copy oci:LAYOUT:TAG docker://REF`; returns the digest the registry stored."""
    if "/" not in ref:
        raise SystemExit(f"PUSH={ref}: expected HOST[:PORT]/REPO[:TAG]")
    tls = tls_args(ref)
    with tempfile.TemporaryDirectory() as d:
        digest_file = Path(d) / "digest"
        cmd = [skopeo, "copy", "--quiet", "--preserve-digests", "--digestfile",
               str(digest_file), *tls, f"oci:{layout}:{tag}", f"docker://{ref}"]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise SystemExit(f"skopeo copy to {ref} failed (exit {r.returncode}):\n"
                             f"{r.stderr.strip()}")
        return digest_file.read_text().strip()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", type=Path, default=REPO / "dist" / "barbican.wasm")
    ap.add_argument("--out", type=Path, default=REPO / "dist" / "oci")
    ap.add_argument("--tag", default=None, help="tag inside the layout (default: the version)")
    ap.add_argument("--push", metavar="HOST[:PORT]/REPO[:TAG]", default="")
    args = ap.parse_args(argv)
    if not args.wasm.is_file():
        print(f"{args.wasm}: missing (make wasm)", file=sys.stderr)
        return 1
    tag = args.tag or cargo_version()
    try:
        image = build_image(args.wasm.read_bytes())
    except ValueError as e:
        print(f"{args.wasm}: {e}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_layout(image, args.out, tag)
    print(f"{args.out}: OCI image layout, tag {tag} (compat variant: plugin.wasm in one "
          f"{LAYER_TYPE} layer)")
    print(f"image digest: {image.digest}  (WasmPlugin sha256: {image.digest.split(':')[1]})")
    print(f"wasm sha256:  {image.wasm_sha256}")
    if args.push:
        pushed = push(args.out, tag, args.push)
        if pushed != image.digest:
            print(f"{args.push}: the registry stored {pushed}, not {image.digest}",
                  file=sys.stderr)
            return 1
        print(f"pushed: {args.push}@{pushed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
