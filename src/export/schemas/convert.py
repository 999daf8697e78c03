#!/usr/bin/env python3
"""Converts the CRD schemas in crd/ (openAPIV3Schema, as Kubernetes reads it) to JSON Schema
(draft 2020-12) in this folder, strict the way `kubectl apply` (field validation Strict) is:
an object with listed properties takes no others, unless it preserves unknown fields.

    python3 src/export/schemas/convert.py     # rewrites the *.schema.json files

apiVersion and kind are pinned to the CRD's group/version and kind, and required with metadata
and spec (which the export always writes: their absence is a bug, not a choice); `nullable: true` becomes
a null alternative; x-kubernetes-* keywords and `default`s (applied by the API server, not
checked) are dropped. Needs PyYAML."""

import json
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent


def convert(node):
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("default", "nullable", "description"):
            continue
        if key in ("properties",):
            out[key] = {name: convert(schema) for name, schema in value.items()}
        else:
            out[key] = convert(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def main():
    for source in sorted((HERE / "crd").glob("*.yaml")):
        crd = yaml.safe_load(source.read_text())
        schema = convert(crd["openAPIV3Schema"])
        schema["properties"]["apiVersion"]["const"] = f"{crd['group']}/{crd['version']}"
        schema["properties"]["kind"]["const"] = crd["kind"]
        schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"{crd['kind']} ({crd['group']}/{crd['version']})",
            **schema,
        }
        target = HERE / f"{source.stem}.schema.json"
        target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"{source.name} -> {target.name}")


if __name__ == "__main__":
    main()
