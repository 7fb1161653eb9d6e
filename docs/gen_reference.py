#!/usr/bin/env python3
"""Write docs/reference.md, the custom resources' reference, from the API models and the CRDs.

Names, types, defaults, descriptions and schema rules come from the generated openAPIV3Schema
(`rke2fleet.api.crdgen`); rules that only the models enforce come from the models' validators,
each named in RULES below, so a new validator without a sentence here stops the generator
instead of going undocumented. `tests/docs/test_reference.py` fails when the checked-in file
differs from what this script writes.

    python docs/gen_reference.py           # rewrite docs/reference.md
    python docs/gen_reference.py --check   # exit 1 when docs/reference.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import AfterValidator, BaseModel, BeforeValidator

from rke2fleet import GROUP, VERSION
from rke2fleet.api import RKE2ClusterSpec, RKE2ClusterStatus, RKE2NodeSpec, RKE2NodeStatus
from rke2fleet.api.crdgen import generate_crd
from rke2fleet.api.rke2keys import (
    BOTH_ROLE_KEYS,
    OPERATOR_OWNED_KEYS,
    SERVER_ONLY_KEYS,
    SERVER_ONLY_PREFIXES,
)

OUTPUT = Path(__file__).resolve().parent / "reference.md"
Schema = dict[str, Any]
CRD_PATTERN = "the CRD checks it with a regular expression too"

# What each model validator enforces, by function name (the models are the only place these
# rules live besides the schema keywords, so they are spelled out once here).
RULES: dict[str, str] = {
    "_check_version": "RKE2 release form `v1.36.3+rke2r1` (RC: `v1.36.4-rc1+rke2r1`)",
    "_check_channel": "`stable`, `latest`, `testing` or a minor line such as `v1.36`",
    "_check_host": "hostname (RFC 1123) or IP address; not a URL, no port",
    "_check_ip": "IPv4 or IPv6 address",
    "_check_subdomain": "DNS-1123 subdomain (lowercase letters, digits, `-`, `.`)",
    "_check_secret_key": "Secret data key (letters, digits, `-`, `_`, `.`)",
    "_check_port": "",  # the schema's minimum/maximum say it
    "_check_unix_user": "Unix user name (lowercase letters, digits, `_`, `-`)",
    "_check_http_url": "`http://` or `https://` URL",
    "_check_artifacts_url": "`http://`, `https://` or `file:///` URL; `{version}` is replaced with spec.version",
    "_check_host_path": "absolute path on the hosts",
    "_check_registry_host": "registry host, optionally `:port`, or `*`",
    "_check_no_proxy": "one host, domain, IP or CIDR (no spaces, commas or quotes)",
    "_check_addon": "a `helm.cattle.io/v1` HelmChart or HelmChartConfig with metadata.name (DNS subdomain) and spec",
    "_check_http_url_or_empty": "`http://` or `https://` URL, or empty",
    "_check_host_key": "one OpenSSH public key line `<type> <base64> [comment]` whose data encodes that type",
    "_check_label": "Kubernetes label `key=value`",
    "_check_taint": "Kubernetes taint `key[=value]:Effect` (NoSchedule, PreferNoSchedule, NoExecute)",
    "_check_duration": "positive duration such as `30s`, `5m`, `1h30m` (units h, m, s, ms)",
    "_check_node_key": "RKE2 config key valid for the node's role; operator-owned keys refused",
    "_check_value": "string, number, boolean or a list of those",
    "optional_empty_as_none": '`""` means unset',
    "check": "RKE2 {role} config key; {extra}operator-owned keys refused",
}


def _rule_text(func: Callable[..., Any]) -> str:
    name = func.__name__
    if name not in RULES:
        raise SystemExit(f"gen_reference: validator {func.__qualname__} has no entry in RULES; add one")
    text = RULES[name]
    if name == "check" and func.__closure__:  # rke2fleet.api.config._key_checker(role)
        role = func.__closure__[0].cell_contents
        extra = "server-only keys refused; " if role == "agent" else ""
        text = text.format(role=role, extra=extra)
    return text


def _validators(tp: Any, where: str = "") -> Iterator[str]:
    """Rule sentences of the validators inside a type annotation, prefixed by where they apply."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *meta = typing.get_args(tp)
        for m in meta:
            if isinstance(m, AfterValidator | BeforeValidator):
                yield where + _rule_text(m.func)
        yield from _validators(base, where)
        return
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        yield from _validators(args[0], "each entry: ")
    elif origin is dict:
        yield from _validators(args[0], "each key: ")
        yield from _validators(args[1], "each value: ")
    else:
        for arg in args:
            yield from _validators(arg, where)


def _model_rules(model: type[BaseModel]) -> dict[str, list[str]]:
    """camelCase field path → rule sentences from the model's validators, nested models included."""
    out: dict[str, list[str]] = {}
    for field in model.model_fields.values():
        alias = field.alias or ""
        rules = [_rule_text(m.func) for m in field.metadata if isinstance(m, AfterValidator | BeforeValidator)]
        rules += list(_validators(field.annotation))
        rules = sorted(dict.fromkeys(r for r in rules if r), key=lambda r: r == RULES["optional_empty_as_none"])
        if rules:
            out[alias] = rules
        for sub in _nested_models(field.annotation):
            for path, sub_rules in _model_rules(sub).items():
                out[f"{alias}.{path}"] = sub_rules
    return out


def _nested_models(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
    for arg in typing.get_args(tp):
        yield from _nested_models(arg)


# ------------------------------------------------------------------------------- schema walk


def _type_of(node: Schema) -> str:
    t = str(node.get("type", "any"))
    if t == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if t == "object" and "additionalProperties" in node:
        return "map[string]any" if "properties" not in node else "object"
    if node.get("x-kubernetes-preserve-unknown-fields") and "type" not in node:
        return "any"
    return t


def _schema_rules(node: Schema) -> list[str]:
    rules: list[str] = []
    if "enum" in node:
        rules.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "minimum" in node and "maximum" in node:
        rules.append(f"{node['minimum']} to {node['maximum']}")
    elif "minimum" in node:
        rules.append(f"at least {node['minimum']}")
    elif "maximum" in node:
        rules.append(f"at most {node['maximum']}")
    if node.get("minLength") == 1:
        rules.append("not empty")
    elif node.get("minLength"):
        rules.append(f"at least {node['minLength']} characters")
    if "maxLength" in node:
        rules.append(f"at most {node['maxLength']} characters")
    if "maxItems" in node:
        rules.append(f"at most {node['maxItems']} entries")
    if "pattern" in node:
        rules.append(CRD_PATTERN)
    items = node.get("items") or {}
    if "maxLength" in items:
        rules.append(f"each entry at most {items['maxLength']} characters")
    return rules


def _default(node: Schema) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if value in ({}, []):
        return f"`{json.dumps(value)}`"
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(schema: Schema, prefix: str, model_rules: dict[str, list[str]] | None) -> Iterator[str]:
    required = set(schema.get("required", []))
    for name, node in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        key = path.split(".", 1)[1] if "." in path else path
        cells = [f"`{path}`", _type_of(node), _default(node)]
        if model_rules is not None:
            rules = _schema_rules(node) + model_rules.get(key, [])
            rules.sort(key=lambda r: r == CRD_PATTERN)  # the regular expression's note goes last
            cells += ["yes" if name in required else "", "; ".join(dict.fromkeys(rules))]
        description = str(node.get("description", ""))
        if model_rules is None and "enum" in node:  # status: the values it takes
            description += " One of " + ", ".join(f"`{v}`" for v in node["enum"]) + "."
        cells.append(description)
        yield "| " + " | ".join(_cell(c) for c in cells) + " |"
        child = node.get("items", node) if node.get("type") == "array" else node
        if child.get("type") == "object" and "properties" in child:
            inner = f"{path}[]." if node.get("type") == "array" else f"{path}."
            yield from _rows(child, inner, model_rules)


def _fields_table(schema: Schema, root: str, model: type[BaseModel] | None) -> list[str]:
    if model is not None:
        head = ["| Field | Type | Default | Required | Validation | Description |", "|---|---|---|---|---|---|"]
        return head + list(_rows(schema, f"{root}.", _model_rules(model)))
    head = ["| Field | Type | Description |", "|---|---|---|"]
    return head + [_strip_default(r) for r in _rows(schema, f"{root}.", None)]


def _strip_default(row: str) -> str:
    cells = row.split(" | ")
    return " | ".join(cells[:2] + cells[3:])  # status fields have no defaults


# ------------------------------------------------------------------------------- document


KINDS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "RKE2Cluster": (RKE2ClusterSpec, RKE2ClusterStatus),
    "RKE2Node": (RKE2NodeSpec, RKE2NodeStatus),
}


def _kind_section(kind: str, spec_model: type[BaseModel]) -> list[str]:
    crd = generate_crd(kind)
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    spec, status = schema["properties"]["spec"], schema["properties"]["status"]
    out = [
        f"## {kind}",
        "",
        f"`apiVersion: {GROUP}/{VERSION}`, namespaced, plural `{names['plural']}`, "
        f"short name `{', '.join(names['shortNames'])}`, status subresource. {schema['description']}",
        "",
        f"### {kind} spec",
        "",
        str(spec.get("description", "")),
        "",
        *_fields_table(spec, "spec", spec_model),
        "",
    ]
    cel = spec.get("x-kubernetes-validations", [])
    if cel:
        out += ["Cross-field rules (in the CRD as CEL, and in the models):", ""]
        out += [f"- `{r['rule']}`: {r['message']}" for r in cel]
        out.append("")
    out += [f"### {kind} status", "", *_fields_table(status, "status", None), ""]
    out += [f"### {kind} printer columns (`kubectl get {names['shortNames'][0]}`)", ""]
    out += ["| Column | JSONPath | Description |", "|---|---|---|"]
    for col in version["additionalPrinterColumns"]:
        out.append(f"| {col['name']} | `{col['jsonPath']}` | {_cell(col.get('description', ''))} |")
    out.append("")
    return out


def _config_keys_section() -> list[str]:
    out = [
        "## Pass-through config.yaml keys",
        "",
        "`spec.serverConfig`, `spec.agentConfig` (RKE2Cluster) and `spec.config` (RKE2Node) accept "
        "these RKE2 keys (`key+`, RKE2's append form, is judged like `key`); anything else is refused, "
        "because RKE2 itself only warns about an unknown key and an agent silently ignores a server key.",
        "",
        "- Servers and agents: " + ", ".join(f"`{k}`" for k in sorted(BOTH_ROLE_KEYS)),
        "- Servers only: "
        + ", ".join(f"`{k}`" for k in sorted(SERVER_ONLY_KEYS))
        + ", and every key starting with "
        + ", ".join(f"`{p}`" for p in SERVER_ONLY_PREFIXES),
        "",
        "Keys the operator writes itself are refused wherever they appear, with a message saying what to use:",
        "",
        "| Key | Instead |",
        "|---|---|",
    ]
    out += [f"| `{k}` | {_cell(v)} |" for k, v in OPERATOR_OWNED_KEYS.items()]
    out.append("")
    return out


HEADER = [
    "<!-- Generated by `python docs/gen_reference.py` from the API models and CRDs. Do not edit. -->",
    "",
    "# rke2fleet custom resources reference",
    "",
    "Every rule below is enforced by the operator's models (`rke2fleet validate -f`, and on every "
    "reconcile). Types, enums, bounds, lengths, required fields and the rules marked as checked by the CRD "
    "are in the generated CRDs (`crds/`) too, so the API server refuses them at apply time. Unknown fields "
    "are errors. `kubectl explain rke2cluster.spec.ssh` shows the same descriptions.",
    "",
]


def render() -> str:
    lines = list(HEADER)
    for kind, (spec_model, _status_model) in KINDS.items():
        lines += _kind_section(kind, spec_model)
    lines += _config_keys_section()
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the file differs, write nothing")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(f"{args.output} is stale: run `python docs/gen_reference.py`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
