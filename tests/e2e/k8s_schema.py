"""Validate Kubernetes manifests the way the API server would, without a cluster.

    import k8s_schema
    problems = k8s_schema.validate(manifest_dict)      # [] when the apiserver would accept it
    problems = k8s_schema.validate_file("deploy/istio/wasmplugin.yaml")   # every `---` document

Custom resources are checked against the CRDs vendored under tests/k8s/crds/ (every YAML
document there of kind CustomResourceDefinition; each file names its source repository, path
and commit). The CRD is chosen by the manifest's `apiVersion` (group/version) and `kind`; the
version must be `served`. What is checked follows the apiserver
(k8s.io/apiextensions-apiserver `pkg/apiserver/schema`, `pkg/registry/customresource`):

- the version's `openAPIV3Schema` with JSON Schema (Python `jsonschema`): types, enums,
  `required`, patterns, lengths, min/max, `nullable`, `x-kubernetes-int-or-string`;
- **unknown fields are errors**: the apiserver prunes fields its structural schema does not
  name (and `kubectl apply --validate=strict`, the default, refuses them). Every object schema
  here is closed unless it says `x-kubernetes-preserve-unknown-fields: true` or has
  `additionalProperties`; `apiVersion`, `kind`, `metadata` are always allowed at the root;
- `x-kubernetes-list-type: map` (keys unique) and `set` (items unique);
- `x-kubernetes-validations` (CEL): the rules listed in `CEL_RULES` below (and every
  "at most one of these fields" rule) are evaluated by a Python transcription of the rule; any other rule is reported by `unevaluated_rules()` (a
  test asserts that list is empty for what we ship, so a new rule cannot pass unnoticed);
- metadata basics for every object: `name` (DNS-1123 subdomain), `namespace` (DNS-1123
  label), `labels`/`annotations` maps of strings, no unknown metadata fields.

Core kinds (v1 Secret/ConfigMap/Service/Namespace/ServiceAccount, apps/v1 Deployment and
DaemonSet, patches of them, networking.k8s.io/v1 Ingress) have no CRD: `CORE_SCHEMAS` holds small closed schemas of the
fields our manifests use, transcribed from k8s.io/api (core/v1, apps/v1, networking/v1 types.go):
enough to refuse a misspelled field or a wrong type, not the whole API.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CRD_DIR = REPO / "tests" / "k8s" / "crds"
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Label/annotation keys: an optional DNS-subdomain prefix and a name (apimachinery
# validation.IsQualifiedName).
QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# ObjectMeta fields a manifest may carry (k8s.io/apimachinery pkg/apis/meta/v1 types.go).
METADATA_FIELDS = {
    "name", "generateName", "namespace", "labels", "annotations", "finalizers",
    "ownerReferences", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
}


# ---------------------------------------------------------------------------------------
# CEL rules we evaluate (the exact rule text from the vendored CRDs -> a Python predicate
# over `self`, the value the rule is attached to). The message is the CRD's.
# ---------------------------------------------------------------------------------------

# `(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) <= 1`: at most one of these fields.
_AT_MOST_ONE = re.compile(r"^\(has\(self\.\w+\) \? 1 : 0\)( \+ \(has\(self\.\w+\) \? 1 : 0\))* <= 1$")


def _at_most_one(rule: str) -> Callable[[Any], bool] | None:
    if not _AT_MOST_ONE.match(rule):
        return None
    fields = re.findall(r"has\(self\.(\w+)\)", rule)
    return lambda s: sum(f in s for f in fields) <= 1


def _url_scheme_ok(url: str) -> bool:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return (m.group(1).lower() if m else "") in ("", "http", "https", "oci", "file")


CEL_RULES: dict[str, Callable[[Any], bool]] = {
    # istio/api extensions/v1alpha1/wasm.proto (WasmPlugin)
    '(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1':
        lambda s: sum(k in s for k in ("selector", "targetRef", "targetRefs")) <= 1,
    '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)':
        lambda s: s.get("valueFrom", "") != "HOST" or "value" not in s,
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) &&\nurl("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        _url_scheme_ok,
    '!self.contains("*")': lambda s: "*" not in s,
    'self.all(key, !key.contains("*"))': lambda s: all("*" not in k for k in s),
    'self.all(key, key.size() != 0)': lambda s: all(len(k) != 0 for k in s),
    'self.size() == 0': lambda s: len(s) == 0,
}


# --- Gateway API (standard channel v1.6.1) and Envoy Gateway, vendored from envoyproxy/gateway
# (tests/k8s/crds/envoy-gateway/). The apiserver applies a field's `default` before CEL runs,
# so absent fields read as their CRD default here (parentRef group/kind, backendRef group/kind,
# path type/value, rule matches, listener tls mode).
_GW_GROUP = "gateway.networking.k8s.io"
_EG_TARGET_KINDS = ("Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute",
                    "TLSRoute")
_ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute")
_DEFAULT_MATCHES = [{"path": {"type": "PathPrefix", "value": "/"}}]
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


def _parent_key(p: dict, with_section: bool) -> tuple:
    key = (p.get("group", _GW_GROUP), p.get("kind", "Gateway"), p["name"], p.get("namespace") or "")
    return key + ((p.get("sectionName") or "",) if with_section else ())


def _prefix_rewrite(f: dict, kind: str) -> bool:
    path = (f.get(kind) or {}).get("path") or {}
    return path.get("type") == "ReplacePrefixMatch" and "replacePrefixMatch" in path


def _one_prefix_rewrite(filters: list, kind: str) -> bool:
    return sum(_prefix_rewrite(f, kind) for f in filters) == 1


def _single_prefix_match(rule: dict) -> bool:
    matches = rule.get("matches", _DEFAULT_MATCHES)
    return (len(matches) == 1 and "path" in matches[0]
            and matches[0]["path"].get("type", "PathPrefix") == "PathPrefix")


def _backend_prefix_rule(kind: str) -> Callable[[Any], bool]:
    return lambda s: not ("backendRefs" in s and sum(
        "filters" in b and _one_prefix_rewrite(b["filters"], kind) for b in s["backendRefs"]) == 1
    ) or _single_prefix_match(s)


def _path_rule(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda s: s.get("type", "PathPrefix") not in ("Exact", "PathPrefix") or \
        check(s.get("value", "/"))


def _tls_mode(listener: dict) -> str:
    return listener["tls"].get("mode", "Terminate")


CEL_RULES.update({
    # Envoy Gateway api/v1alpha1 envoyextensionpolicy_types.go, wasm_types.go
    "(has(self.targetRef) && !has(self.targetRefs)) || (!has(self.targetRef) && has(self.targetRefs)) || (has(self.targetSelectors) && self.targetSelectors.size() > 0) ":
        lambda s: ("targetRef" in s) != ("targetRefs" in s) or len(s.get("targetSelectors") or []) > 0,
    "has(self.targetRef) ? self.targetRef.group == 'gateway.networking.k8s.io' : true":
        lambda s: "targetRef" not in s or s["targetRef"]["group"] == _GW_GROUP,
    "has(self.targetRef) ? self.targetRef.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'] : true":
        lambda s: "targetRef" not in s or s["targetRef"]["kind"] in _EG_TARGET_KINDS,
    "has(self.targetRefs) ? self.targetRefs.all(ref, ref.group == 'gateway.networking.k8s.io') : true ":
        lambda s: all(r["group"] == _GW_GROUP for r in s.get("targetRefs", [])),
    "has(self.targetRefs) ? self.targetRefs.all(ref, ref.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) : true ":
        lambda s: all(r["kind"] in _EG_TARGET_KINDS for r in s.get("targetRefs", [])),
    "!has(self.mergeType) || ((!has(self.targetRef) || self.targetRef.kind in ['HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) && (!has(self.targetRefs) || self.targetRefs.all(ref, ref.kind in ['HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'])) && (!has(self.targetSelectors) || self.targetSelectors.all(sel, sel.kind in ['HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'])))":
        lambda s: "mergeType" not in s or all(
            r["kind"] in _ROUTE_KINDS for r in [s["targetRef"]] * ("targetRef" in s)
            + s.get("targetRefs", []) + s.get("targetSelectors", [])),
    "self.type == 'HTTP' ? has(self.http) : !has(self.http)":
        lambda s: (s["type"] == "HTTP") == ("http" in s),
    "self.type == 'Image' ? has(self.image) : !has(self.image)":
        lambda s: (s["type"] == "Image") == ("image" in s),
    "self.kind == 'Secret'": lambda s: s.get("kind", "Secret") == "Secret",
    # Envoy Gateway api/v1alpha1 envoyproxy_types.go, shared_types.go
    "!(has(self.mergeGateways) && self.mergeGateways && has(self.mergeBackends))":
        lambda s: not (s.get("mergeGateways") and "mergeBackends" in s),
    "!has(self.image) || !has(self.imageRepository)":
        lambda s: not ("image" in s and "imageRepository" in s),
    "!has(self.luaValidation) || !has(self.lua)":
        lambda s: not ("luaValidation" in s and "lua" in s),
    "((has(self.envoyDeployment) && !has(self.envoyDaemonSet)) || (!has(self.envoyDeployment) && has(self.envoyDaemonSet))) || (!has(self.envoyDeployment) && !has(self.envoyDaemonSet))":
        lambda s: not ("envoyDeployment" in s and "envoyDaemonSet" in s),
    "((has(self.envoyHpa) && !has(self.envoyDaemonSet)) || (!has(self.envoyHpa) && has(self.envoyDaemonSet))) || (!has(self.envoyHpa) && !has(self.envoyDaemonSet))":
        lambda s: not ("envoyHpa" in s and "envoyDaemonSet" in s),
    # Gateway API: a transition rule (immutable field) compares with the stored object; a
    # create has none, and the apiserver skips the rule.
    "self == oldSelf": lambda s: True,
    # Gateway listeners
    "self.all(l, l.protocol in ['HTTP', 'TCP', 'UDP'] ? !has(l.tls) : true)":
        lambda s: all(l["protocol"] not in ("HTTP", "TCP", "UDP") or "tls" not in l for l in s),
    "self.all(l, l.protocol in ['TCP', 'UDP']  ? (!has(l.hostname) || l.hostname == '') : true)":
        lambda s: all(l["protocol"] not in ("TCP", "UDP") or not l.get("hostname") for l in s),
    "self.all(l, (l.protocol == 'HTTPS' && has(l.tls)) ? (l.tls.mode == '' || l.tls.mode == 'Terminate') : true)":
        lambda s: all(not (l["protocol"] == "HTTPS" and "tls" in l)
                      or _tls_mode(l) in ("", "Terminate") for l in s),
    "self.all(l, (l.protocol == 'TLS' ? has(l.tls) && has(l.tls.mode) && l.tls.mode != '' : true))":
        lambda s: all(l["protocol"] != "TLS" or ("tls" in l and _tls_mode(l) != "") for l in s),
    "self.all(l1, self.exists_one(l2, l1.name == l2.name))":
        lambda s: all(sum(l1["name"] == l2["name"] for l2 in s) == 1 for l1 in s),
    "self.all(l1, self.exists_one(l2, l1.port == l2.port && l1.protocol == l2.protocol && (has(l1.hostname) && has(l2.hostname) ? l1.hostname == l2.hostname : !has(l1.hostname) && !has(l2.hostname))))":
        lambda s: all(sum((l1["port"], l1["protocol"], l1.get("hostname")) ==
                          (l2["port"], l2["protocol"], l2.get("hostname")) for l2 in s) == 1
                      for l1 in s),
    "self.mode == 'Terminate' ? size(self.certificateRefs) > 0 || size(self.options) > 0 : true":
        lambda s: s.get("mode", "Terminate") != "Terminate" or bool(s.get("certificateRefs"))
        or bool(s.get("options")),
    # HTTPRoute parentRefs: one reference per parent and section
    "self.all(p1, self.all(p2, p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) || p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || (has(p1.__namespace__) && has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__ )) ? ((!has(p1.sectionName) || p1.sectionName == '') == (!has(p2.sectionName) || p2.sectionName == '')) : true))":
        lambda s: all(_parent_key(p1, False) != _parent_key(p2, False)
                      or bool(p1.get("sectionName")) == bool(p2.get("sectionName"))
                      for p1 in s for p2 in s),
    "self.all(p1, self.exists_one(p2, p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) || p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || (has(p1.__namespace__) && has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__ )) && (((!has(p1.sectionName) || p1.sectionName == '') && (!has(p2.sectionName) || p2.sectionName == '')) || (has(p1.sectionName) && has(p2.sectionName) && p1.sectionName == p2.sectionName))))":
        lambda s: all(sum(_parent_key(p1, True) == _parent_key(p2, True) for p2 in s) == 1
                      for p1 in s),
    # HTTPRoute rules
    "(self.size() > 0 ? self[0].matches.size() : 0) + (self.size() > 1 ? self[1].matches.size() : 0) + (self.size() > 2 ? self[2].matches.size() : 0) + (self.size() > 3 ? self[3].matches.size() : 0) + (self.size() > 4 ? self[4].matches.size() : 0) + (self.size() > 5 ? self[5].matches.size() : 0) + (self.size() > 6 ? self[6].matches.size() : 0) + (self.size() > 7 ? self[7].matches.size() : 0) + (self.size() > 8 ? self[8].matches.size() : 0) + (self.size() > 9 ? self[9].matches.size() : 0) + (self.size() > 10 ? self[10].matches.size() : 0) + (self.size() > 11 ? self[11].matches.size() : 0) + (self.size() > 12 ? self[12].matches.size() : 0) + (self.size() > 13 ? self[13].matches.size() : 0) + (self.size() > 14 ? self[14].matches.size() : 0) + (self.size() > 15 ? self[15].matches.size() : 0) <= 128":
        lambda s: sum(len(r.get("matches", _DEFAULT_MATCHES)) for r in s[:16]) <= 128,
    "(has(self.backendRefs) && size(self.backendRefs) > 0) ? (!has(self.filters) || self.filters.all(f, !has(f.requestRedirect))): true":
        lambda s: not s.get("backendRefs") or all("requestRedirect" not in f
                                                  for f in s.get("filters", [])),
    "(has(self.filters) && self.filters.exists_one(f, has(f.requestRedirect) && has(f.requestRedirect.path) && f.requestRedirect.path.type == 'ReplacePrefixMatch' && has(f.requestRedirect.path.replacePrefixMatch))) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        lambda s: not _one_prefix_rewrite(s.get("filters", []), "requestRedirect")
        or _single_prefix_match(s),
    "(has(self.filters) && self.filters.exists_one(f, has(f.urlRewrite) && has(f.urlRewrite.path) && f.urlRewrite.path.type == 'ReplacePrefixMatch' && has(f.urlRewrite.path.replacePrefixMatch))) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        lambda s: not _one_prefix_rewrite(s.get("filters", []), "urlRewrite")
        or _single_prefix_match(s),
    "(has(self.backendRefs) && self.backendRefs.exists_one(b, (has(b.filters) && b.filters.exists_one(f, has(f.requestRedirect) && has(f.requestRedirect.path) && f.requestRedirect.path.type == 'ReplacePrefixMatch' && has(f.requestRedirect.path.replacePrefixMatch))) )) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        _backend_prefix_rule("requestRedirect"),
    "(has(self.backendRefs) && self.backendRefs.exists_one(b, (has(b.filters) && b.filters.exists_one(f, has(f.urlRewrite) && has(f.urlRewrite.path) && f.urlRewrite.path.type == 'ReplacePrefixMatch' && has(f.urlRewrite.path.replacePrefixMatch))) )) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        _backend_prefix_rule("urlRewrite"),
    "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true":
        lambda s: not (s.get("group", "") == "" and s.get("kind", "Service") == "Service")
        or "port" in s,
    # HTTPRoute path matches
    "self.type in ['Exact','PathPrefix'] || self.type == 'RegularExpression'":
        lambda s: s.get("type", "PathPrefix") in ("Exact", "PathPrefix", "RegularExpression"),
    "(self.type in ['Exact','PathPrefix']) ? self.value.startsWith('/') : true":
        _path_rule(lambda v: v.startswith("/")),
    **{f"(self.type in ['Exact','PathPrefix']) ? !self.value.contains('{x}') : true":
       _path_rule(lambda v, x=x: x not in v) for x in ("//", "/./", "/../", "%2f", "%2F", "#")},
    **{f"(self.type in ['Exact','PathPrefix']) ? !self.value.endsWith('{x}') : true":
       _path_rule(lambda v, x=x: not v.endswith(x)) for x in ("/..", "/.")},
    "(self.type in ['Exact','PathPrefix']) ? self.value.matches(r\"\"\"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$\"\"\") : true":
        _path_rule(lambda v: bool(_PATH_CHARS.match(v))),
})


class _Unevaluated(set):
    pass


_UNEVALUATED: _Unevaluated = _Unevaluated()


def unevaluated_rules() -> list[str]:
    """CEL rules met while validating that `CEL_RULES` has no transcription for."""
    return sorted(_UNEVALUATED)


# ---------------------------------------------------------------------------------------
# structural schema -> JSON Schema
# ---------------------------------------------------------------------------------------

def _to_json_schema(node: Any, root: bool = False) -> Any:
    """The apiserver's reading of an OpenAPI v3 structural schema, as JSON Schema."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "properties":
            out[k] = {name: _to_json_schema(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties", "not"):
            out[k] = _to_json_schema(v) if isinstance(v, dict) else v
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [_to_json_schema(s) for s in v]
        elif k in ("description", "example", "externalDocs", "default", "format"):
            # `format` is advisory in the apiserver except for a few; `default` is applied,
            # not checked. Neither decides acceptance here.
            continue
        elif k.startswith("x-kubernetes-"):
            out[k] = v
        else:
            out[k] = v
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        t = out["type"]
        out["type"] = [t, "null"] if isinstance(t, str) else list(t) + ["null"]
    out.pop("nullable", None)
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in node:
        props = dict(out.get("properties", {}))
        if root:
            for name in ("apiVersion", "kind"):
                props.setdefault(name, {"type": "string"})
            # ObjectMeta is the apiserver's own (checked by _metadata_problems), whatever
            # the CRD says about it (controller-gen writes `metadata: {type: object}`).
            props["metadata"] = {"type": "object"}
        out["properties"] = props
        out["additionalProperties"] = False
    return out


def _k8s_checks(schema: dict) -> Callable:
    """A jsonschema validator class with the x-kubernetes-* keywords as checks."""

    def list_type(validator, value, instance, schema):
        if not validator.is_type(instance, "array"):
            return
        if value == "map":
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen = set()
            for i, item in enumerate(instance):
                if not isinstance(item, dict):
                    continue
                k = tuple(item.get(key) for key in keys)
                if k in seen:
                    yield jsonschema.ValidationError(
                        f"duplicate entry for key {dict(zip(keys, k))} (x-kubernetes-list-type: map)",
                        path=[i])
                seen.add(k)
        elif value == "set":
            seen_set: list[Any] = []
            for i, item in enumerate(instance):
                if item in seen_set:
                    yield jsonschema.ValidationError(
                        f"duplicate item {item!r} (x-kubernetes-list-type: set)", path=[i])
                seen_set.append(item)

    def validations(validator, rules, instance, schema):
        for rule in rules:
            text = rule.get("rule", "")
            fn = CEL_RULES.get(text) or _at_most_one(text)
            if fn is None:
                _UNEVALUATED.add(text)
                continue
            try:
                ok = fn(instance)
            except (TypeError, AttributeError, KeyError):
                ok = False
            if not ok:
                yield jsonschema.ValidationError(rule.get("message") or f"failed rule: {text}")

    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    return jsonschema.validators.extend(base, {
        "x-kubernetes-list-type": list_type,
        "x-kubernetes-validations": validations,
    })


def _errors(schema: dict, instance: Any) -> list[str]:
    cls = _k8s_checks(schema)
    v = cls(schema)
    out = []
    for e in sorted(v.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        out.extend(_describe(e))
    return out


def _path(parts: Iterable[Any]) -> str:
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s or "<root>"


def _describe(e: jsonschema.ValidationError) -> list[str]:
    where = _path(e.absolute_path)
    if e.validator == "additionalProperties" and e.validator_value is False:
        known = set(e.schema.get("properties", {}))
        extra = sorted(set(e.instance) - known) if isinstance(e.instance, dict) else []
        return [f"{_path(list(e.absolute_path) + [k])}: unknown field (not in the schema; "
                f"the apiserver would prune it)" for k in extra] or [f"{where}: {e.message}"]
    if e.validator == "enum":
        return [f"{where}: {e.instance!r} is not one of {e.validator_value}"]
    if e.validator in ("anyOf", "oneOf") and e.context:
        return [f"{where}: {e.message}"]
    return [f"{where}: {e.message}"]


# ---------------------------------------------------------------------------------------
# vendored CRDs
# ---------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def crd_index(crd_dir: str = str(CRD_DIR)) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> {"schema", "crd", "file", "scope"} for every served version."""
    index: dict[tuple[str, str], dict] = {}
    for f in sorted(Path(crd_dir).rglob("*.y*ml")):
        # libyaml's safe loader when PyYAML has it: the vendored CRDs are megabytes.
        for doc in yaml.load_all(f.read_text(), Loader=_SAFE_LOADER):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            for ver in spec.get("versions", []):
                if not ver.get("served"):
                    continue
                schema = (ver.get("schema") or {}).get("openAPIV3Schema")
                if schema is None:
                    continue
                key = (f"{group}/{ver['name']}", kind)
                if key in index:
                    raise ValueError(f"{f}: {key} also defined in {index[key]['file']}")
                index[key] = {"schema": _to_json_schema(copy.deepcopy(schema), root=True),
                              "crd": doc["metadata"]["name"], "file": str(f),
                              "scope": spec.get("scope", "Namespaced")}
    return index


def crd_for(manifest: dict) -> dict | None:
    return crd_index().get((manifest.get("apiVersion"), manifest.get("kind")))


# ---------------------------------------------------------------------------------------
# core kinds: closed schemas of the fields we use (k8s.io/api core/v1, apps/v1 types.go)
# ---------------------------------------------------------------------------------------

def _obj(props: dict, required: Iterable[str] = ()) -> dict:
    s: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        s["required"] = list(required)
    return s


_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT_OR_STR = {"anyOf": [{"type": "integer"}, {"type": "string"}]}

_KEY_REF = _obj({"name": _STR, "key": _STR, "optional": _BOOL}, ["key"])
_ENV_VAR = _obj({
    "name": _STR, "value": _STR,
    "valueFrom": _obj({
        "secretKeyRef": _KEY_REF, "configMapKeyRef": _KEY_REF,
        "fieldRef": _obj({"apiVersion": _STR, "fieldPath": _STR}, ["fieldPath"]),
    }),
}, ["name"])
_VOLUME_MOUNT = _obj({"name": _STR, "mountPath": _STR, "readOnly": _BOOL, "subPath": _STR},
                     ["name", "mountPath"])
_RESOURCES = _obj({"limits": {"type": "object", "additionalProperties": _INT_OR_STR},
                   "requests": {"type": "object", "additionalProperties": _INT_OR_STR}})
_SECURITY_CONTEXT = _obj({
    "runAsNonRoot": _BOOL, "runAsUser": _INT, "runAsGroup": _INT,
    "readOnlyRootFilesystem": _BOOL, "allowPrivilegeEscalation": _BOOL,
    "capabilities": _obj({"drop": {"type": "array", "items": _STR},
                          "add": {"type": "array", "items": _STR}}),
})
_CONTAINER = _obj({
    "name": _STR, "image": _STR,
    "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "command": {"type": "array", "items": _STR}, "args": {"type": "array", "items": _STR},
    "env": {"type": "array", "items": _ENV_VAR},
    "envFrom": {"type": "array", "items": _obj({
        "prefix": _STR, "secretRef": _obj({"name": _STR, "optional": _BOOL}),
        "configMapRef": _obj({"name": _STR, "optional": _BOOL})})},
    "volumeMounts": {"type": "array", "items": _VOLUME_MOUNT},
    "resources": _RESOURCES, "securityContext": _SECURITY_CONTEXT,
    "workingDir": _STR,
}, ["name"])
_VOLUME = _obj({
    "name": _STR,
    "emptyDir": _obj({"medium": _STR, "sizeLimit": _INT_OR_STR}),
    "secret": _obj({"secretName": _STR, "optional": _BOOL, "defaultMode": _INT,
                    "items": {"type": "array", "items": _obj({"key": _STR, "path": _STR,
                                                             "mode": _INT}, ["key", "path"])}}),
    "configMap": _obj({"name": _STR, "optional": _BOOL, "defaultMode": _INT}),
    # core/v1 ImageVolumeSource (Kubernetes >= 1.31, beta in 1.33): an OCI image as a volume.
    "image": _obj({"reference": _STR,
                   "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}),
}, ["name"])
_POD_SPEC = _obj({
    "containers": {"type": "array", "items": _CONTAINER},
    "initContainers": {"type": "array", "items": _CONTAINER},
    "volumes": {"type": "array", "items": _VOLUME},
    "serviceAccountName": _STR, "securityContext": _obj({
        "runAsNonRoot": _BOOL, "runAsUser": _INT, "runAsGroup": _INT, "fsGroup": _INT}),
})
_TEMPLATE = _obj({"metadata": _obj({"labels": _STRMAP, "annotations": _STRMAP}),
                  "spec": _POD_SPEC})
_LABEL_SELECTOR = _obj({"matchLabels": _STRMAP})
_WORKLOAD_SPEC = _obj({"replicas": _INT, "selector": _LABEL_SELECTOR, "template": _TEMPLATE})

_ROOT = {"apiVersion": _STR, "kind": _STR, "metadata": {"type": "object"}}

CORE_SCHEMAS: dict[tuple[str, str], dict] = {
    ("v1", "Secret"): _obj({**_ROOT, "type": _STR, "immutable": _BOOL,
                            "data": _STRMAP, "stringData": _STRMAP}),
    ("v1", "ConfigMap"): _obj({**_ROOT, "immutable": _BOOL, "data": _STRMAP,
                               "binaryData": _STRMAP}),
    ("v1", "Namespace"): _obj({**_ROOT}),
    ("v1", "ServiceAccount"): _obj({**_ROOT}),
    ("v1", "Service"): _obj({**_ROOT, "spec": _obj({
        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]},
        "selector": _STRMAP,
        "ports": {"type": "array", "items": _obj({
            "name": _STR, "port": _INT, "targetPort": _INT_OR_STR, "protocol": _STR,
            "appProtocol": _STR}, ["port"])},
    })}),
    ("networking.k8s.io/v1", "Ingress"): _obj({**_ROOT, "spec": _obj({
        "ingressClassName": _STR,
        "rules": {"type": "array", "items": _obj({"host": _STR, "http": _obj({
            "paths": {"type": "array", "items": _obj({
                "path": _STR,
                "pathType": {"enum": ["Exact", "Prefix", "ImplementationSpecific"]},
                "backend": _obj({"service": _obj({"name": _STR, "port": _obj({
                    "number": _INT, "name": _STR})}, ["name"])}),
            }, ["pathType", "backend"])}}, ["paths"])})},
        "tls": {"type": "array", "items": _obj({"hosts": {"type": "array", "items": _STR},
                                                 "secretName": _STR})},
    })}),
    ("apps/v1", "Deployment"): _obj({**_ROOT, "spec": _WORKLOAD_SPEC}),
    ("apps/v1", "DaemonSet"): _obj({**_ROOT, "spec": _WORKLOAD_SPEC}),
}


# ---------------------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------------------

def _metadata_problems(manifest: dict, cluster_scoped: bool) -> list[str]:
    out: list[str] = []
    md = manifest.get("metadata")
    if not isinstance(md, dict):
        return ["metadata: required (an object with at least `name`)"]
    for k in sorted(set(md) - METADATA_FIELDS):
        out.append(f"metadata.{k}: unknown field")
    name = md.get("name")
    if not isinstance(name, str) or not name:
        out.append("metadata.name: required")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        out.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain "
                   "(lower case letters, digits, '-' and '.')")
    ns = md.get("namespace")
    if ns is not None:
        if cluster_scoped:
            out.append("metadata.namespace: set on a cluster-scoped kind")
        elif not isinstance(ns, str) or len(ns) > 63 or not DNS1123_LABEL.match(ns):
            out.append(f"metadata.namespace: {ns!r} is not a DNS-1123 label")
    for field in ("labels", "annotations"):
        m = md.get(field)
        if m is None:
            continue
        if not isinstance(m, dict):
            out.append(f"metadata.{field}: must be a map of strings")
            continue
        for k, v in m.items():
            if not isinstance(k, str) or not QUALIFIED_NAME.match(k):
                out.append(f"metadata.{field}.{k}: not a qualified name")
            if not isinstance(v, str):
                out.append(f"metadata.{field}.{k}: value must be a string, got {type(v).__name__}")
            elif field == "labels" and (len(v) > 63 or not LABEL_VALUE.match(v)):
                out.append(f"metadata.labels.{k}: {v!r} is not a valid label value")
    return out


def _secret_problems(manifest: dict) -> list[str]:
    out = []
    for k, v in (manifest.get("data") or {}).items():
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, TypeError, ValueError):
            out.append(f"data.{k}: not base64 (use stringData for plain text)")
    return out


def validate(manifest: Any) -> list[str]:
    """Every problem the apiserver would have with this object, as `path: problem` lines.

    Custom resources need a vendored CRD for their apiVersion/kind, core kinds an entry in
    CORE_SCHEMAS; anything else is a problem itself (we never pass what we cannot check)."""
    if not isinstance(manifest, dict):
        return [f"<root>: a manifest is an object, got {type(manifest).__name__}"]
    api, kind = manifest.get("apiVersion"), manifest.get("kind")
    if not isinstance(api, str) or not api:
        return ["apiVersion: required"]
    if not isinstance(kind, str) or not kind:
        return ["kind: required"]
    crd = crd_for(manifest)
    if crd is not None:
        problems = _metadata_problems(manifest, crd["scope"] == "Cluster")
        return problems + _errors(crd["schema"], manifest)
    core = CORE_SCHEMAS.get((api, kind))
    if core is not None:
        problems = _metadata_problems(manifest, kind == "Namespace")
        problems += _errors(core, manifest)
        if kind == "Secret":
            problems += _secret_problems(manifest)
        return problems
    served = sorted(f"{a} {k}" for a, k in crd_index() if k == kind)
    hint = f" (vendored: {', '.join(served)})" if served else ""
    return [f"{api} {kind}: no vendored CRD or core schema for this apiVersion/kind{hint}"]


FRAGMENTS: dict[str, dict] = {"Volume": _VOLUME, "VolumeMount": _VOLUME_MOUNT, "EnvVar": _ENV_VAR,
                              "Container": _CONTAINER}


def validate_fragment(kind: str, value: Any) -> list[str]:
    """A core/v1 piece on its own (a Helm values entry that the chart copies into a pod
    spec): `Volume`, `VolumeMount`, `EnvVar` or `Container`."""
    return _errors(FRAGMENTS[kind], value)


def load_documents(path: str | Path) -> list[dict]:
    """The non-empty YAML documents of a file."""
    return [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]


def validate_file(path: str | Path) -> list[str]:
    """validate() for each document of a file, problems prefixed by `file[doc] Kind/name`."""
    out = []
    for i, doc in enumerate(load_documents(path)):
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None
        kind = doc.get("kind") if isinstance(doc, dict) else None
        for p in validate(doc):
            out.append(f"{path}[{i}] {kind}/{name}: {p}")
    return out


def is_kubernetes_object(doc: Any) -> bool:
    """A document with apiVersion and kind (Helm values files and plugin documents are not)."""
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc
