"""deploy/envoy-gateway/ is accepted by Envoy Gateway's and Gateway API's own schemas, and fits
together the way Envoy Gateway will wire it.

Schemas: the CRDs vendored in tests/k8s/crds/envoy-gateway/ (EnvoyExtensionPolicy from
envoyproxy/gateway's chart, Gateway API v1.6.1 standard channel as Envoy Gateway ships it;
source and commit in each file's header), checked by tests/e2e/k8s_schema.py with the
apiserver's rules. The negative cases show the validator refuses what the apiserver would.
Wiring: the cluster names the Barbican document uses are the ones Envoy Gateway generates for
the HTTPRoutes here (eg_xds.ir_routes, following internal/gatewayapi), and the embedded
document passes Barbican's own check.
"""

from __future__ import annotations

import copy
import os
import subprocess

import pytest

import eg_xds as E
import harness as H
import k8s_schema as K

FILES = sorted(E.DEPLOY_EG.glob("*.yaml"))


def policy() -> dict:
    return K.load_documents(E.DEPLOY_EG / "envoyextensionpolicy.yaml")[0]


def gateway() -> dict:
    return K.load_documents(E.DEPLOY_EG / "gateway.yaml")[1]


def route(name: str) -> dict:
    return next(d for d in K.load_documents(E.DEPLOY_EG / "httproutes.yaml")
                if d["metadata"]["name"] == name)


def problems_at(manifest: dict, where: str) -> list[str]:
    return [p for p in K.validate(manifest) if p.startswith(where)]


@pytest.mark.parametrize("path", [f.name for f in FILES])
def test_manifest_is_accepted(path):
    docs = K.load_documents(E.DEPLOY_EG / path)
    assert docs and all(K.crd_for(d) is not None or (d["apiVersion"], d["kind"]) in
                        K.CORE_SCHEMAS for d in docs), path
    assert K.validate_file(E.DEPLOY_EG / path) == []


def test_every_cel_rule_met_was_evaluated():
    for f in FILES:
        K.validate_file(f)
    assert K.unevaluated_rules() == []


def test_kinds_come_from_the_vendored_crds():
    kinds = {(d["apiVersion"], d["kind"]): K.crd_for(d)["file"]
             for f in FILES for d in K.load_documents(f) if d["kind"] != "Secret"}
    assert set(kinds) >= {("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"),
                          ("gateway.networking.k8s.io/v1", "Gateway"),
                          ("gateway.networking.k8s.io/v1", "GatewayClass"),
                          ("gateway.networking.k8s.io/v1", "HTTPRoute")}
    assert all("/crds/envoy-gateway/" in f for f in kinds.values()), kinds


# --- the validator refuses what the apiserver refuses ----------------------------------

def test_unknown_fields_are_refused():
    m = policy()
    m["spec"]["wasm"][0]["failOpenn"] = False
    assert any(p.startswith("spec.wasm[0].failOpenn: unknown field") for p in K.validate(m))
    m = policy()
    m["spec"]["wasm"][0]["code"]["image"]["digest"] = "sha256:" + "a" * 64
    assert any(p.startswith("spec.wasm[0].code.image.digest: unknown field")
               for p in K.validate(m))
    r = route("sonarr")
    r["spec"]["rules"][0]["backendRefs"][0]["service"] = "sonarr"
    assert any("backendRefs[0].service: unknown field" in p for p in K.validate(r))


def test_wrong_enum_values_are_refused():
    for field, bad in (("type", "OCI"), ("pullPolicy", "Never")):
        m = policy()
        m["spec"]["wasm"][0]["code"][field] = bad
        assert any(p.startswith(f"spec.wasm[0].code.{field}: {bad!r} is not one of")
                   for p in K.validate(m)), (field, K.validate(m))
    r = route("authentik-outpost")
    r["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    assert any("matches[0].path.type: 'Prefix' is not one of" in p for p in K.validate(r))


def test_config_is_free_form_json():
    # x-kubernetes-preserve-unknown-fields with no type: Envoy Gateway passes any JSON on
    # as the plugin's configuration string; Barbican's own check is what refuses a bad one.
    m = policy()
    m["spec"]["wasm"][0]["config"]["anything"] = {"goes": [1]}
    assert K.validate(m) == []


def test_cel_rules_are_enforced():
    m = policy()
    del m["spec"]["wasm"][0]["code"]["image"]
    assert "spec.wasm[0].code: If type is Image, image field needs to be set." in K.validate(m)
    m = policy()
    m["spec"]["targetRefs"][0]["group"] = "gateway.envoyproxy.io"
    assert any("targetRefs[*].group of gateway.networking.k8s.io" in p for p in K.validate(m))
    m = policy()
    m["spec"]["targetRef"] = copy.deepcopy(m["spec"]["targetRefs"][0])
    assert "spec: either targetRef or targetRefs must be used" in K.validate(m)
    g = gateway()
    g["spec"]["listeners"].append(copy.deepcopy(g["spec"]["listeners"][0]))
    assert any(p.startswith("spec.listeners: Listener name must be unique")
               for p in K.validate(g)), K.validate(g)
    g = gateway()
    g["spec"]["listeners"][0]["tls"]["mode"] = "Passthrough"
    assert problems_at(g, "spec.listeners:"), K.validate(g)
    r = route("authentik-outpost")
    r["spec"]["rules"][0]["matches"][0]["path"]["value"] = "/outpost.goauthentik.io/../admin"
    assert problems_at(r, "spec.rules[0].matches[0].path:"), K.validate(r)
    r = route("sonarr")
    del r["spec"]["rules"][0]["backendRefs"][0]["port"]
    assert any(p.startswith("spec.rules[0].backendRefs[0]: Must have port for Service")
               for p in K.validate(r)), K.validate(r)
    r = route("sonarr")
    r["spec"]["parentRefs"].append(copy.deepcopy(r["spec"]["parentRefs"][0]))
    assert problems_at(r, "spec.parentRefs:"), K.validate(r)


def test_required_fields_and_types():
    m = policy()
    del m["spec"]["wasm"][0]["code"]["image"]["url"]
    assert any("'url' is a required property" in p for p in K.validate(m))
    m = policy()
    m["spec"]["wasm"][0]["failOpen"] = "false"
    assert any(p.startswith("spec.wasm[0].failOpen:") for p in K.validate(m))
    m = policy()
    m["spec"]["wasm"][0]["env"] = {"hostKeys": "BARBICAN_SESSION_SECRET"}
    assert any(p.startswith("spec.wasm[0].env.hostKeys:") for p in K.validate(m))


# --- wiring ------------------------------------------------------------------------------

def manifests() -> E.Manifests:
    return E.load_manifests(E.eg_files())


def gateway_routes() -> list[E.IRRoute]:
    m = manifests()
    gw = m.gateways[0]
    return E.ir_routes(m, gw, gw["spec"]["listeners"][0])


def clusters_named(value) -> list[str]:
    if isinstance(value, dict):
        return [c for k, v in value.items()
                for c in ([v] if k == "cluster" else clusters_named(v))]
    if isinstance(value, list):
        return [c for v in value for c in clusters_named(v)]
    return []


def test_policy_attaches_to_the_gateway_and_fails_closed():
    m = manifests()
    p, gw = m.policies[0], m.gateways[0]
    assert E._policy_covers(p, gw)
    assert gw["spec"]["gatewayClassName"] in {c["metadata"]["name"] for c in m.gateway_classes
                                              if c["spec"]["controllerName"] == E.CONTROLLER}
    (wasm,) = p["spec"]["wasm"]
    assert wasm["failOpen"] is False and wasm["code"]["type"] == "Image"


def test_barbican_reaches_the_outpost_and_authentik_through_route_clusters():
    # Envoy Gateway gives a wasm extension no cluster of its own: the document names the
    # clusters it generates for these routes' rules (`httproute/<ns>/<name>/rule/<i>`).
    backends = {r.cluster: r.backend for r in gateway_routes()}
    config = policy()["spec"]["wasm"][0]["config"]
    named = clusters_named(config)
    assert named and all(c in backends for c in named), (named, sorted(backends))
    fa = config["session"]["forward_auth"]["cluster"]
    assert backends[fa] == ("ak-outpost-authentik-embedded-outpost.authentik.svc.cluster.local",
                            9000)
    jwks = config["jwt"]["providers"][0]["jwks"]["cluster"]
    assert backends[jwks] == ("authentik-server.authentik.svc.cluster.local", 80)


def test_every_app_host_sends_the_login_flow_to_the_outpost():
    # Per hostname, the longest path prefix wins across routes; a host missing from the
    # outpost route would send /outpost.goauthentik.io/ to its app instead.
    first_prefix = {}
    for r in gateway_routes():
        first_prefix.setdefault(r.hostname, r)
    for host, r in first_prefix.items():
        if host == "auth.homelab.local":
            continue
        assert r.match == {"path_separated_prefix": "/outpost.goauthentik.io"}, (host, r)
        assert r.backend[0].startswith("ak-outpost-authentik-embedded-outpost."), (host, r)


def env_names(value) -> list[str]:
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return [value["env"]]
        return [n for v in value.values() for n in env_names(v)]
    if isinstance(value, list):
        return [n for v in value for n in env_names(v)]
    return []


def test_secrets_the_documents_name_reach_the_vm():
    # Envoy's VM sees only the variables listed in env.hostKeys (vm_config host_env_keys),
    # and Envoy has only those the EnvoyProxy puts in its container, from the Secret's keys.
    proxy = K.load_documents(E.DEPLOY_EG / "envoyproxy.yaml")[0]
    container_env = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["env"]
    (secret,) = K.load_documents(E.DEPLOY_EG / "secret.yaml")
    for e in container_env:
        ref = e["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert proxy["metadata"]["namespace"] == secret["metadata"]["namespace"] == \
        gateway()["metadata"]["namespace"]
    assert gateway()["spec"]["infrastructure"]["parametersRef"]["name"] == \
        proxy["metadata"]["name"]
    named = set()
    for f in FILES:
        for doc in K.load_documents(f):
            if doc["kind"] == "EnvoyExtensionPolicy":
                for wasm in doc["spec"]["wasm"]:
                    names = env_names(wasm["config"])
                    assert set(names) <= set((wasm.get("env") or {}).get("hostKeys", [])), f
                    named |= set(names)
    assert named and named <= {e["name"] for e in container_env}


def test_embedded_config_passes_barbicans_check(tmp_path):
    cli = H.REPO / "dist" / "barbican"
    if not cli.is_file():
        pytest.fail("dist/barbican is missing: make build", pytrace=False)
    for f in FILES:
        for doc in K.load_documents(f):
            if doc["kind"] != "EnvoyExtensionPolicy":
                continue
            for i, wasm in enumerate(doc["spec"]["wasm"]):
                path = tmp_path / f"{f.stem}-{i}.json"
                # The bytes Envoy Gateway hands the plugin (wasm.go: config as JSON).
                path.write_text(E.config_json(wasm["config"]))
                # `check` reads the named secrets from its own environment.
                env = dict(os.environ, **{n: "x" * 48 for n in env_names(wasm["config"])})
                p = subprocess.run([str(cli), "check", "--host", "envoy", str(path)],
                                   capture_output=True, text=True, timeout=30, env=env)
                assert p.returncode == 0, f"{f.name} wasm[{i}]: {p.stdout}{p.stderr}"
