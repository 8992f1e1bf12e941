"""`make oci`'s image through a real registry: built by tools/oci.py (no daemon), pushed by
real skopeo to a real CNCF distribution registry on loopback, pulled back over the registry
HTTP API and unpacked the way Istio's agent selects the wasm (oci_registry.fetch_wasm, a
transcription of istio/istio pkg/wasm/imagefetcher.go): the bytes are dist/barbican.wasm's.
Broken images (a wrong layer media type, a corrupted layer, a wrong pin) are refused, each
by the check that should catch it, and the build is reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

import harness as H
from oci_registry import (REPO_NAME, FetchError, fetch_wasm, oci, registry,  # noqa: F401
                          registry_wasm)


def custom_section(name: bytes, payload: bytes) -> bytes:
    """A wasm custom section (id 0): a distinct but valid module for a throwaway image."""
    body = bytes([len(name)]) + name + payload
    assert len(body) < 128
    return b"\x00" + bytes([len(body)]) + body


def test_make_oci_script_pushes_and_the_registry_serves_the_same_wasm(wasm, registry):
    out = H.new_tmp_dir("make-oci") / "oci"
    ref = f"{registry.host}/{REPO_NAME}:cli"
    r = subprocess.run([sys.executable, str(H.REPO / "tools" / "oci.py"), "--wasm", str(wasm),
                        "--out", str(out), "--tag", "cli", "--push", ref],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    digest = re.search(r"^image digest: (sha256:[0-9a-f]{64})", r.stdout, re.M).group(1)
    wasm_sha = re.search(r"^wasm sha256:\s+([0-9a-f]{64})$", r.stdout, re.M).group(1)
    assert f"pushed: {ref}@{digest}" in r.stdout
    assert wasm_sha == hashlib.sha256(Path(wasm).read_bytes()).hexdigest()
    index = json.loads((out / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]
    assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "cli"}

    # The registry serves the manifest bytes that were built (the pin holds after a push).
    status, headers, body = registry.get(f"/v2/{REPO_NAME}/manifests/cli",
                                         accept="application/vnd.oci.image.manifest.v1+json")
    assert status == 200 and oci.sha256(body) == digest == headers["docker-content-digest"]
    got = fetch_wasm(registry, REPO_NAME, "cli", pin=digest.split(":")[1])
    assert hashlib.sha256(got.wasm).hexdigest() == wasm_sha


def test_registry_wasm_fixture_is_the_built_module(wasm, registry_wasm):
    assert registry_wasm.wasm_path.read_bytes() == Path(wasm).read_bytes()
    assert registry_wasm.manifest_digest == oci.image_digest(wasm)


def test_image_is_the_compat_variant_istio_tries_first(wasm):
    image = oci.build_image(Path(wasm).read_bytes())
    manifest = json.loads(image.manifest)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    tar = gzip.decompress(image.blobs[layer["digest"]])
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        (m,) = tf.getmembers()
        assert (m.name, m.mode, m.mtime, m.uid, m.gid, m.isreg()) == \
            ("plugin.wasm", 0o644, 0, 0, 0, True)
        assert tf.extractfile(m).read() == Path(wasm).read_bytes()
    config = json.loads(image.blobs[manifest["config"]["digest"]])
    assert config["rootfs"]["diff_ids"] == [oci.sha256(tar)]


def test_build_is_reproducible(wasm):
    a, b = (H.new_tmp_dir("repro") / "oci" for _ in range(2))
    for out in (a, b):
        r = subprocess.run([sys.executable, str(H.REPO / "tools" / "oci.py"), "--wasm",
                            str(wasm), "--out", str(out), "--tag", "0.1.0"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr

    def tree(d: Path) -> dict[str, str]:
        return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(d.rglob("*")) if p.is_file()}
    assert tree(a) == tree(b)
    assert json.loads((a / "index.json").read_text())["manifests"][0]["digest"] == \
        oci.image_digest(wasm)
    # A different module gives a different image.
    other = Path(wasm).read_bytes() + custom_section(b"x", b"1")
    assert oci.build_image(other).digest != oci.image_digest(wasm)


@pytest.mark.parametrize("layer_type,why", [
    # Istio's own test case (imagefetcher_test.go "invalid image"): an uncompressed tar.
    ("application/vnd.oci.image.layer.v1.tar",
     "could not parse as compat variant: invalid media type application/vnd.oci.image.layer"
     ".v1.tar (expect application/vnd.oci.image.layer.v1.tar+gzip)\n"
     "\t* could not parse as oci variant: number of layers must be 2 but got 1"),
    # The CNCF wasm artifact type (what `oras push` of a .wasm makes): Istio reads none of it.
    ("application/vnd.wasm.content.layer.v1+wasm",
     "invalid media type application/vnd.wasm.content.layer.v1+wasm"),
])
def test_wrong_layer_media_type_is_refused(wasm, registry, layer_type, why):
    image = oci.build_image(Path(wasm).read_bytes(), layer_type=layer_type)
    tag = "mt-" + hashlib.sha256(layer_type.encode()).hexdigest()[:8]
    assert registry.push_image(image, f"{REPO_NAME}-broken:{tag}") == image.digest
    with pytest.raises(FetchError) as e:
        fetch_wasm(registry, f"{REPO_NAME}-broken", tag, pin=image.digest.split(":")[1])
    assert why in str(e.value)


def test_corrupted_layer_is_refused(wasm, registry):
    # A module of its own, so that its layer blob is shared with no other image here.
    module = Path(wasm).read_bytes() + custom_section(b"corrupt", b"me")
    image = oci.build_image(module)
    assert registry.push_image(image, f"{REPO_NAME}-corrupt:1") == image.digest
    assert fetch_wasm(registry, f"{REPO_NAME}-corrupt", "1").wasm == module
    # Bit rot (or a tampering mirror) in the registry's storage, in the middle of the module:
    # the registry serves it as it is, gzip and tar still parse, the wasm header is intact.
    layer = json.loads(image.manifest)["layers"][0]
    blob = registry.blob_file(layer["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    status, _, served = registry.get(f"/v2/{REPO_NAME}-corrupt/blobs/{layer['digest']}")
    assert status == 200 and served == bytes(data)
    with pytest.raises(FetchError, match=r"error verifying sha256 checksum after reading "
                                         rf"{len(data)} bytes; got '[0-9a-f]{{64}}', want "
                                         rf"'{layer['digest'].split(':')[1]}'"):
        fetch_wasm(registry, f"{REPO_NAME}-corrupt", "1", pin=image.digest.split(":")[1])
    # What the digest check stands for: the module inside differs from the one built (and
    # only gzip's CRC at the very end of the stream would also notice).
    raw = zlib.decompressobj(-zlib.MAX_WBITS).decompress(bytes(data[10:]))
    inner = tarfile.open(fileobj=io.BytesIO(raw))
    corrupted = inner.extractfile("plugin.wasm").read()
    assert corrupted.startswith(oci.WASM_MAGIC) and corrupted != module


def test_wrong_pin_is_refused_before_the_layer_is_read(wasm, registry, registry_wasm):
    tag = oci.cargo_version()
    other = oci.build_image(Path(wasm).read_bytes() + custom_section(b"x", b"2")).digest
    with pytest.raises(FetchError, match=r"module downloaded from oci://.*/barbican:\S+ has "
                                         rf"checksum {registry_wasm.manifest_digest[7:]}, "
                                         rf"which does not match: {other[7:]}"):
        fetch_wasm(registry, REPO_NAME, tag, pin=other.split(":")[1])
    # The wasm's own hash is not what Istio compares for oci:// (cache.go getOrFetch).
    wasm_sha = hashlib.sha256(Path(wasm).read_bytes()).hexdigest()
    with pytest.raises(FetchError, match="which does not match"):
        fetch_wasm(registry, REPO_NAME, tag, pin=wasm_sha)


def test_tls_verification_is_off_only_for_loopback_registries():
    assert oci.tls_args("127.0.0.1:5000/barbican:1") == ["--dest-tls-verify=false"]
    assert oci.tls_args("localhost:5000/barbican:1") == ["--dest-tls-verify=false"]
    assert oci.tls_args("[::1]:5000/barbican:1") == ["--dest-tls-verify=false"]
    for ref in ("registry.homelab.local/barbican:0.1.0", "127.0.0.1.nip.io:5000/b:1",
                "10.0.0.1:5000/barbican:1", "localhost.evil.test/b:1"):
        assert oci.tls_args(ref) == [], ref
