#!/usr/bin/python3
"""crd_validate.py FILE... — check tcpmap configs against Emissary's own CRD schemas.

The schemas are Emissary's Helm-templated CRDs (tests/data/emissary-crds/). This checks the
OpenAPI v3 subset they use — type, properties, items, enum, required and
x-kubernetes-preserve-unknown-fields — as the Kubernetes API server would before pruning, so
a file tcpmap accepts is known to pass `kubectl apply` unchanged. Kinds the CRDs do not cover
are ignored, as tcpmap ignores them.

Prints one line per problem as FILE: doc N (KIND NAME): PATH: what; exits 1 if any.
"""
import os
import re
import sys

import yaml

CRD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "emissary-crds")
TEMPLATE_LINE = re.compile(r"^\s*\{\{-?.*\}\}\s*$")
TEMPLATE_INLINE = re.compile(r"\{\{.*?\}\}")


def load_crds():
    """{(group/version, kind): openAPIV3Schema} for every served version."""
    schemas = {}
    for name in sorted(os.listdir(CRD_DIR)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(CRD_DIR, name)) as f:
            lines = [l for l in f if not TEMPLATE_LINE.match(l)]
        text = TEMPLATE_INLINE.sub("templated", "".join(lines))
        crd = yaml.safe_load(text)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schemas[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return schemas


def type_ok(value, t):
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    return True


def validate(value, schema, path, problems):
    t = schema.get("type")
    if t and not type_ok(value, t):
        problems.append(f"{path}: {type(value).__name__} where the schema wants {t}")
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in value:
                problems.append(f"{path}: required field {req} is missing")
        for k, v in value.items():
            if k in props:
                validate(v, props[k], f"{path}.{k}", problems)
            elif props and not schema.get("x-kubernetes-preserve-unknown-fields") \
                    and "additionalProperties" not in schema and path != "":
                problems.append(f"{path}: unknown field {k} (pruned by Kubernetes)")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            validate(v, schema["items"], f"{path}[{i}]", problems)


def main(paths):
    schemas = load_crds()
    failed = 0
    for path in paths:
        with open(path) as f:
            docs = list(yaml.safe_load_all(f))
        for n, doc in enumerate(docs, 1):
            if not isinstance(doc, dict):
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in schemas:
                continue
            problems = []
            validate(doc, schemas[key], "", problems)
            name = (doc.get("metadata") or {}).get("name", "?")
            for p in problems:
                print(f"{path}: doc {n} ({key[1]} {name}): {p.lstrip('.')}")
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
