"""A real OCI registry on loopback, and Istio's image fetcher over its HTTP API.

- `start_registry()`: Debian's `docker-registry` (CNCF distribution 2.8) with its own config
  file and filesystem storage in a temp dir, on a free loopback port; stopped by PID.
- `fetch_wasm(registry, repo, ref, pin)`: what Istio's agent does with an `oci://` URL,
  transcribed from istio/istio at commit 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c:
  pkg/wasm/imagefetcher.go PrepareFetch (manifest, digest, then the three image variants in
  Istio's order: Docker manifest type -> docker variant; otherwise the *compat* variant, last
  layer `application/vnd.oci.image.layer.v1.tar+gzip` with `plugin.wasm` inside; otherwise
  the *oci* variant, exactly two layers, one `application/vnd.module.wasm.content.layer.v1+wasm`),
  pkg/wasm/cache.go getOrFetch (the pin compared with the *manifest* digest, then
  isValidWasmBinary), with go-containerregistry's `remote` underneath (the Accept list of
  remote.Get; a blob's sha256 checked against its descriptor when read to the end).
  Error texts are Istio's, so a test can show which check refused an image.
  One difference, on purpose: go-containerregistry checks a blob's digest when its reader
  reaches EOF, and Istio's compat extraction stops reading at the end of plugin.wasm, so
  whether Istio itself notices a corrupted layer depends on read-ahead (unverified here: no Go
  toolchain). This transcription always reads the whole blob; the pin (manifest digest) is
  checked by Istio in every case.
- fixtures `registry` (one per module) and `registry_wasm` (the image `make oci` builds from
  $BARBICAN_WASM, pushed with real skopeo, pulled back by `fetch_wasm`: an
  `istio_xds.PulledImage` whose `wasm_path` is the file that came out of the registry).

Import the fixtures in a test module: `from oci_registry import registry, registry_wasm`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness as H
import istio_xds as X

sys.path.insert(0, str(H.REPO / "tools"))
import oci  # noqa: E402  (tools/oci.py: what `make oci` runs)

REGISTRY_BIN = "/usr/bin/docker-registry"
REPO_NAME = "barbican"

# go-containerregistry pkg/v1/remote descriptor.go: the manifest types remote.Get accepts.
ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
])
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
MAX_WASM_BYTES = 256 << 20   # pilot/pkg/features MaxWasmBinarySizeBytes default


class FetchError(RuntimeError):
    """The agent refused the image (the message is the one Istio logs)."""


class RegistryProc(H.Proc):
    port: int = 0
    storage: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str, accept: str | None = None) -> tuple[int, dict, bytes]:
        req = urllib.request.Request(f"http://{self.host}{path}")
        if accept:
            req.add_header("Accept", accept)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def push(self, layout: Path, tag: str, ref: str) -> str:
        """`make oci PUSH=` (tools/oci.py push: real skopeo) to REPO[:TAG] here."""
        return oci.push(layout, tag, f"{self.host}/{ref}")

    def push_image(self, image: "oci.Image", ref: str) -> str:
        layout = H.new_tmp_dir("oci-layout") / "oci"
        oci.write_layout(image, layout, "t")
        return self.push(layout, "t", ref)

    def blob_file(self, digest: str) -> Path:
        """Where distribution's filesystem driver keeps a blob (storage/paths.go)."""
        hexd = digest.split(":", 1)[1]
        return (self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] /
                hexd / "data")


def registry_config(storage: Path, port: int) -> str:
    # distribution 2.8 configuration.md: filesystem storage, loopback only, no auth, no
    # background purging (a test run is short), access log off (it goes to our log file).
    return f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: loopback-test-registry-not-a-secret
"""


def start_registry(timeout: float = 15.0) -> RegistryProc:
    if not Path(REGISTRY_BIN).is_file():
        raise RuntimeError(f"{REGISTRY_BIN} missing: apt-get install docker-registry "
                           "(make deps-system)")
    d = H.new_tmp_dir("registry")
    storage = d / "storage"
    storage.mkdir()
    port = H.free_port()
    cfg = d / "config.yml"
    cfg.write_text(registry_config(storage, port))
    proc = RegistryProc("registry", [REGISTRY_BIN, "serve", str(cfg)])
    proc.port, proc.storage = port, storage
    proc.start()
    try:
        def ready() -> bool:
            if not proc.alive():
                raise H.ProcessExited(proc.name, proc.popen.returncode, proc.log_tail())
            try:
                return proc.get("/v2/")[0] == 200
            except OSError:
                return False
        H.wait_until(ready, timeout, what=f"registry on {proc.host}")
    except Exception:
        proc.stop()
        raise
    return proc


# ---------------------------------------------------------------------------------------
# Istio's fetcher
# ---------------------------------------------------------------------------------------

@dataclass
class Fetched:
    manifest_digest: str    # "sha256:<hex>": what a WasmPlugin's `sha256` is compared with
    wasm: bytes


def _blob(reg: RegistryProc, repo: str, desc: dict) -> bytes:
    """remoteImageLayer.Compressed through verify.ReadCloser: size and sha256 checked."""
    status, _, body = reg.get(f"/v2/{repo}/blobs/{desc['digest']}")
    if status != 200:
        raise FetchError(f"could not get layer content: GET blob {desc['digest']}: {status}")
    got = oci.sha256(body)
    if len(body) != desc["size"] or got != desc["digest"]:
        raise FetchError(f"error verifying sha256 checksum after reading {len(body)} bytes; "
                         f"got {got.split(':')[1]!r}, want {desc['digest'].split(':')[1]!r}")
    return body


def _plugin_wasm(layer: bytes) -> bytes:
    """extractWasmPluginBinary: the first entry named plugin.wasm in the tar.gz."""
    try:
        raw = gzip.GzipFile(fileobj=io.BytesIO(layer)).read(MAX_WASM_BYTES)
    except (OSError, EOFError) as e:
        raise FetchError(f"failed to parse layer as tar.gz: {e}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
            for m in tf:
                if Path(m.name).name == oci.WASM_NAME:
                    f = tf.extractfile(m)
                    return f.read() if f else b""
    except tarfile.TarError as e:
        raise FetchError(f"could not extract wasm binary: {e}") from None
    raise FetchError(f"could not extract wasm binary: {oci.WASM_NAME} not found in the archive")


def _last_layer(layers: list[dict], want: str) -> dict:
    if not layers:
        raise FetchError("number of layers must be greater than zero")
    mt = layers[-1].get("mediaType", "")
    if mt != want:
        raise FetchError(f"invalid media type {mt} (expect {want})")
    return layers[-1]


def _oci_variant(reg: RegistryProc, repo: str, layers: list[dict]) -> bytes:
    """extractOCIArtifactImage."""
    if len(layers) != 2:
        raise FetchError(f"number of layers must be 2 but got {len(layers)}")
    for d in layers:
        if d.get("mediaType") == WASM_LAYER:
            return _blob(reg, repo, d)[:MAX_WASM_BYTES]
    raise FetchError(f"could not find the layer of type {WASM_LAYER}")


def fetch_wasm(reg: RegistryProc, repo: str, ref: str, pin: str = "") -> Fetched:
    """LocalFileCache.getOrFetch for `oci://<reg>/<repo>:<ref>` with WasmPlugin `sha256`=pin."""
    url = f"oci://{reg.host}/{repo}:{ref}"
    status, headers, manifest_bytes = reg.get(f"/v2/{repo}/manifests/{ref}", accept=ACCEPT)
    if status != 200:
        raise FetchError(f"could not fetch Wasm OCI image: could not fetch manifest: "
                         f"{status} {manifest_bytes[:200]!r}")
    manifest = json.loads(manifest_bytes)
    media_type = manifest.get("mediaType") or headers.get("content-type", "")
    if "index" in media_type or "list" in media_type:
        raise FetchError("could not fetch Wasm OCI image: could not fetch image: an index "
                         "(the fetcher expects one image manifest)")
    digest = oci.sha256(manifest_bytes)                     # img.Digest(): the raw bytes
    if pin and pin != "nil" and digest.split(":", 1)[1] != pin:
        raise FetchError(f"module downloaded from {url} has checksum {digest.split(':')[1]}, "
                         f"which does not match: {pin}")
    layers = manifest.get("layers") or []
    if media_type == DOCKER_MANIFEST:
        try:
            wasm = _plugin_wasm(_blob(reg, repo, _last_layer(layers, DOCKER_LAYER)))
        except FetchError as e:
            raise FetchError(f"could not fetch Wasm binary: could not extract Wasm file from "
                             f"the image as Docker container {e}") from None
    else:
        try:
            wasm = _plugin_wasm(_blob(reg, repo, _last_layer(layers, OCI_LAYER)))
        except FetchError as compat:
            try:
                wasm = _oci_variant(reg, repo, layers)
            except FetchError as art:
                raise FetchError(
                    "could not fetch Wasm binary: the given image is in invalid format as an "
                    f"OCI image: 2 errors occurred:\n\t* could not parse as compat variant: "
                    f"{compat}\n\t* could not parse as oci variant: {art}") from None
    if not wasm.startswith(oci.WASM_MAGIC):                 # isValidWasmBinary
        raise FetchError(f"fetched Wasm binary from {url} is invalid")
    return Fetched(digest, wasm)


# ---------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry():
    reg = start_registry()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="module")
def registry_wasm(wasm, registry) -> X.PulledImage:
    """The image of $BARBICAN_WASM (tools/oci.py), pushed by skopeo, pulled back the way
    Istio's agent pulls it; its wasm_path is the module that came out of the registry."""
    tag = oci.cargo_version()
    image = oci.build_image(Path(wasm).read_bytes())
    layout = H.new_tmp_dir("oci-layout") / "oci"
    oci.write_layout(image, layout, tag)
    pushed = registry.push(layout, tag, f"{REPO_NAME}:{tag}")
    assert pushed == image.digest, (pushed, image.digest)
    got = fetch_wasm(registry, REPO_NAME, tag, pin=image.digest.split(":")[1])
    out = H.new_tmp_dir("pulled") / "barbican.wasm"
    out.write_bytes(got.wasm)
    assert hashlib.sha256(got.wasm).hexdigest() == image.wasm_sha256
    return X.PulledImage(f"{registry.host}/{REPO_NAME}:{tag}", got.manifest_digest, out)
