"""Every Kubernetes manifest under deploy/ is accepted by the projects' own schemas.

Custom resources are validated against the CRDs vendored in tests/k8s/crds/ (Istio's from
istio/api `kubernetes/customresourcedefinitions.gen.yaml`, Traefik's from
traefik/traefik-helm-chart `traefik/crds/`, Envoy Gateway's from its chart; sources and
commits in each file's header and tests/k8s/README.md) with the apiserver's semantics
(tests/e2e/k8s_schema.py: unknown fields refused, enums, types, required, CEL rules we
transcribed); core kinds (Secret, Deployment patch) against small closed schemas. Helm values
files are validated against the chart's values.schema.json. Negative cases show that the
validator refuses what the apiserver would.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

import k8s_schema as K

REPO = K.REPO
DEPLOY = REPO / "deploy"
HELM_SCHEMAS = REPO / "tests" / "k8s" / "helm"

# Helm values files (not Kubernetes objects) -> the chart's vendored values.schema.json.
VALUES_SCHEMAS = {
    "deploy/traefik/values.yaml": HELM_SCHEMAS / "traefik" / "values.schema.json",
}


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def rel(p: Path) -> str:
    return str(p.relative_to(REPO))


def test_deploy_has_manifests():
    names = {rel(p) for p in deploy_files()}
    assert "deploy/istio/wasmplugin.yaml" in names, names


@pytest.mark.parametrize("path", [rel(p) for p in deploy_files()])
def test_manifest_is_accepted(path):
    docs = K.load_documents(REPO / path)
    assert docs, f"{path}: no YAML documents"
    if path in VALUES_SCHEMAS:
        schema = json.loads(VALUES_SCHEMAS[path].read_text())
        v = jsonschema.validators.validator_for(schema)(schema)
        errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                  for doc in docs for e in v.iter_errors(doc)]
        assert errors == [], "\n".join(errors)
        return
    for doc in docs:
        assert K.is_kubernetes_object(doc), f"{path}: a document without apiVersion/kind"
    problems = K.validate_file(REPO / path)
    assert problems == [], "\n".join(problems)


def test_every_cel_rule_met_was_evaluated():
    for p in deploy_files():
        if rel(p) not in VALUES_SCHEMAS:
            K.validate_file(p)
    assert K.unevaluated_rules() == [], (
        "CEL rules without a transcription in k8s_schema.CEL_RULES: "
        f"{K.unevaluated_rules()}")


def test_every_custom_resource_has_a_vendored_crd():
    kinds = set()
    for p in deploy_files():
        if rel(p) in VALUES_SCHEMAS:
            continue
        for doc in K.load_documents(p):
            if (doc["apiVersion"], doc["kind"]) not in K.CORE_SCHEMAS:
                assert K.crd_for(doc) is not None, f"{rel(p)}: {doc['apiVersion']} {doc['kind']}"
                kinds.add(doc["kind"])
    assert "WasmPlugin" in kinds


# --- the validator refuses what the apiserver refuses ----------------------------------

def wasmplugin() -> dict:
    return K.load_documents(DEPLOY / "istio" / "wasmplugin.yaml")[0]


def test_unknown_field_is_refused():
    m = wasmplugin()
    m["spec"]["failStrategyy"] = "FAIL_CLOSE"
    problems = K.validate(m)
    assert any(p.startswith("spec.failStrategyy: unknown field") for p in problems), problems


def test_unknown_nested_field_is_refused():
    m = wasmplugin()
    m["spec"]["vmConfig"] = {"env": [{"name": "X", "valueFrom": "HOST", "secretRef": "s"}]}
    problems = K.validate(m)
    assert any(p.startswith("spec.vmConfig.env[0].secretRef: unknown field") for p in problems), problems


def test_wrong_enum_value_is_refused():
    for field, bad in (("failStrategy", "FAIL_CLOSED"), ("phase", "AUTHENTICATION"),
                       ("imagePullPolicy", "Never")):
        m = wasmplugin()
        m["spec"][field] = bad
        problems = K.validate(m)
        assert any(p.startswith(f"spec.{field}: {bad!r} is not one of") for p in problems), problems


def test_plugin_config_is_free_form_but_must_be_an_object():
    # x-kubernetes-preserve-unknown-fields: Barbican's own document is not Istio's business...
    m = wasmplugin()
    m["spec"]["pluginConfig"]["anything"] = {"goes": 1}
    assert K.validate(m) == []
    # ...but it must be an object.
    m["spec"]["pluginConfig"] = "session: {}"
    assert any(p.startswith("spec.pluginConfig:") for p in K.validate(m))


def test_wrong_types_bad_pins_and_cel_rules_are_refused():
    cases = {
        "spec.sha256": ("sha256", "sha256:" + "a" * 64),
        "spec.priority": ("priority", "high"),
        "spec": ("targetRefs", [{"kind": "Gateway", "name": "homelab"}]),   # with selector
        "spec.url": ("url", "ftp://registry/barbican:1"),
    }
    for where, (field, value) in cases.items():
        m = wasmplugin()
        m["spec"][field] = value
        problems = K.validate(m)
        assert any(p.startswith(f"{where}:") for p in problems), (field, problems)
    m = wasmplugin()
    m["spec"]["vmConfig"] = {"env": [{"name": "X", "valueFrom": "HOST", "value": "v"}]}
    assert "spec.vmConfig.env[0]: value may only be set when valueFrom is INLINE" in K.validate(m)
    m["spec"]["vmConfig"] = {"env": [{"name": "X"}, {"name": "X"}]}
    assert any("duplicate entry" in p for p in K.validate(m))


def test_required_fields_and_metadata():
    m = wasmplugin()
    del m["spec"]["url"]
    assert any(p.startswith("spec: 'url' is a required property") for p in K.validate(m))
    m = wasmplugin()
    m["metadata"]["name"] = "Barbican_Plugin"
    assert any(p.startswith("metadata.name:") for p in K.validate(m))
    m = wasmplugin()
    m["metadata"]["labelz"] = {}
    assert "metadata.labelz: unknown field" in K.validate(m)


def test_unknown_kinds_and_versions_are_not_passed():
    m = wasmplugin()
    m["apiVersion"] = "extensions.istio.io/v1beta9"
    assert any("no vendored CRD" in p for p in K.validate(m))
    assert any("no vendored CRD" in p for p in K.validate(
        {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}))


def test_core_kinds_are_checked_too():
    patch = K.load_documents(DEPLOY / "istio" / "gateway-env-patch.yaml")[0]
    bad = copy.deepcopy(patch)
    env = bad["spec"]["template"]["spec"]["containers"][0]["env"][0]
    env["valueFrom"]["secretKeyRef"]["keyy"] = env["valueFrom"]["secretKeyRef"].pop("key")
    problems = K.validate(bad)
    assert any("secretKeyRef.keyy: unknown field" in p for p in problems), problems
    secret = K.load_documents(DEPLOY / "istio" / "secret.yaml")[0]
    secret = copy.deepcopy(secret)
    secret["data"] = {"session-secret": "not base64!"}
    assert any(p.startswith("data.session-secret: not base64") for p in K.validate(secret))


def test_istio_pins_are_one_real_digest():
    # Both WasmPlugins load the same image; `make pin` writes the digest of the image of
    # dist/barbican.wasm (tools/pin_deploy.py), never a placeholder. test_istio_gateway.py
    # checks it is the image that went through the registry.
    pins = {K.load_documents(p)[0]["spec"]["sha256"]
            for p in (DEPLOY / "istio").glob("wasmplugin*.yaml")}
    assert len(pins) == 1 and re.fullmatch(r"[0-9a-f]{64}", next(iter(pins))), pins
    assert pins != {"0" * 64}


def test_yaml_pitfalls_are_caught():
    # An unquoted all-digit sha256 is a YAML integer: the apiserver refuses its type.
    m = wasmplugin()
    m["spec"]["sha256"] = yaml.safe_load("sha256: " + "1" * 64)["sha256"]
    assert isinstance(m["spec"]["sha256"], int)
    assert any(p.startswith("spec.sha256:") for p in K.validate(m))


# --- the Traefik chart's values: what its templates do with them ------------------------

LOCAL_PLUGIN_KEYS = {  # templates/_helpers.tpl getLocalPluginType and friends
    "localPath": {"moduleName", "mountPath", "type", "volumeName", "subPath"},
    "hostPath": {"moduleName", "mountPath", "type", "hostPath"},
    "inlinePlugin": {"moduleName", "mountPath", "type", "source"},
}
FLAG = re.compile(r"^--experimental\.localPlugins\.([\w.-]+)\.settings\.(envs|mounts)=(.+)$")


def traefik_values() -> dict:
    return K.load_documents(DEPLOY / "traefik" / "values.yaml")[0]


def chart_problems(values: dict) -> list[str]:
    """What traefik-helm-chart's templates would fail on or silently ignore
    (_podtemplate.tpl: local plugins, additionalVolumes, additionalVolumeMounts, env)."""
    out = []
    vols = values.get("deployment", {}).get("additionalVolumes", [])
    for i, v in enumerate(vols):
        out += [f"deployment.additionalVolumes[{i}]: {p}" for p in K.validate_fragment("Volume", v)]
    for i, m in enumerate(values.get("additionalVolumeMounts", [])):
        out += [f"additionalVolumeMounts[{i}]: {p}" for p in K.validate_fragment("VolumeMount", m)]
        if m.get("name") not in {v.get("name") for v in vols}:
            out.append(f"additionalVolumeMounts[{i}]: no volume {m.get('name')!r}")
    for i, e in enumerate(values.get("env", [])):
        out += [f"env[{i}]: {p}" for p in K.validate_fragment("EnvVar", e)]
    plugins = values.get("experimental", {}).get("localPlugins", {})
    for name, p in plugins.items():
        kind = p.get("type")
        if kind not in LOCAL_PLUGIN_KEYS:
            out.append(f"experimental.localPlugins.{name}.type: {kind!r} is not one of "
                       f"{sorted(LOCAL_PLUGIN_KEYS)}")
            continue
        for k in sorted(set(p) - LOCAL_PLUGIN_KEYS[kind]):
            out.append(f"experimental.localPlugins.{name}.{k}: not read by the chart")
        if "moduleName" not in p:
            out.append(f"experimental.localPlugins.{name}: is missing moduleName")
        if kind == "localPath" and p.get("volumeName") not in {v.get("name") for v in vols}:
            out.append(f"experimental.localPlugins.{name}: references volume "
                       f"{p.get('volumeName')!r} which is not found in deployment.additionalVolumes")
    envs = {e["name"] for e in values.get("env", [])}
    for arg in values.get("additionalArguments", []):
        m = FLAG.match(arg)
        if not m:
            continue
        name, what, value = m.groups()
        if name not in plugins:
            out.append(f"{arg}: no local plugin {name!r}")
        for item in value.split(","):
            if what == "envs" and item not in envs:
                out.append(f"{arg}: {item} is not in env (the plugin would see nothing)")
            if what == "mounts":
                host = item.split(":")[0]
                if not any(host == mt["mountPath"] or host.startswith(mt["mountPath"] + "/")
                           for mt in values.get("additionalVolumeMounts", [])):
                    out.append(f"{arg}: {host} is not a mounted volume in the Traefik container")
    return out


def test_traefik_values_follow_the_chart_templates():
    assert chart_problems(traefik_values()) == []


def test_traefik_chart_checks_catch_mistakes():
    v = traefik_values()
    v["experimental"]["localPlugins"]["barbican"]["volumeName"] = "nope"
    assert any("which is not found" in p for p in chart_problems(v))
    v = traefik_values()
    v["env"][0]["valueFrom"]["secretKeyRef"]["nmae"] = "x"
    assert any("secretKeyRef.nmae: unknown field" in p for p in chart_problems(v))
    v = traefik_values()
    v["additionalArguments"][0] += ",BARBICAN_OTHER"
    assert any("BARBICAN_OTHER is not in env" in p for p in chart_problems(v))
