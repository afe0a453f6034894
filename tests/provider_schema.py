"""Check terraform/ against the Google provider's real schema, without the provider binary.

The provider cannot be downloaded here, so ``terraform validate`` cannot run. HashiCorp's prebuilt
CDKTF bindings (``cdktf-cdktf-provider-google`` on PyPI) carry a jsii assembly generated from the
provider's schema: every resource and data source, every argument and block, which are required,
the documented enum values, and every attribute a resource exports. ``build`` turns that assembly
into a compact JSON schema; ``check`` reads the HCL (python-hcl2) and reports, per module:

* unknown resource or data source types, unknown arguments or blocks, blocks written as arguments
  (or the reverse), missing required arguments and blocks;
* string literals outside an argument's documented values (e.g. an ``ingress`` value);
* references to undeclared variables, locals, resources, modules, module outputs, and attributes a
  resource does not export (``google_x.y.service_config[0].uri`` is followed through the blocks);
* module calls with unknown inputs or without a required input.

    python tests/provider_schema.py build WHEEL OUT.json
    python tests/provider_schema.py check SCHEMA.json [TERRAFORM_DIR]
"""

from __future__ import annotations

import io
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import hcl2

META_ARGUMENTS = {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
_PARSER_KEYS = ("__is_block__", "__comments__")   # python-hcl2's markers, not terraform's
MODULE_META = {"source", "version", "count", "for_each", "depends_on", "providers"}
# Not in this schema: the archive provider packages function sources, random makes the feedback key.
UNCHECKED_PROVIDERS = ("archive_", "random_")
_LINK = re.compile(r"docs/(resources|data-sources)/(\w+) (google_\w+)\}")
_ANCHOR = re.compile(r"#(\w+) \w+#\w+\}")
_VALUES = re.compile(r'Possible values: \[([^\]]*)\]')


# -- build: jsii assembly → compact schema -------------------------------------------------------
def _assembly(wheel: Path) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(z.read(name))) as tar:
            member = tar.extractfile("package/.jsii")
            assert member is not None, f"{wheel}: no package/.jsii in {name}"
            return json.load(member)


def _block_fqn(types: dict[str, Any], type_: dict[str, Any]) -> tuple[str, bool] | None:
    """(struct fqn, is a list) when a config property is a nested block; None for an argument."""
    candidates = type_.get("union", {}).get("types", [type_])
    for t in candidates:
        if "fqn" in t and types.get(t["fqn"], {}).get("datatype"):
            return t["fqn"], False
        element = t.get("collection", {}).get("elementtype", {})
        if t.get("collection", {}).get("kind") == "array" and types.get(element.get("fqn", ""), {}).get("datatype"):
            return element["fqn"], True
    return None


def _config_node(types: dict[str, Any], fqn: str, depth: int = 0) -> dict[str, Any]:
    node: dict[str, Any] = {"a": {}, "b": {}}
    if depth > 12:
        return node
    for prop in types[fqn].get("properties", []):
        anchor = _ANCHOR.search(prop.get("docs", {}).get("remarks", ""))
        name = anchor.group(1) if anchor else re.sub(r"(?<!^)([A-Z])", r"_\1", prop["name"]).lower()
        required = not prop.get("optional")
        block = _block_fqn(types, prop["type"])
        if block:
            node["b"][name] = {"r": required, "n": _config_node(types, block[0], depth + 1)}
            continue
        entry: dict[str, Any] = {"r": required}
        docs = prop.get("docs", {})
        values = _VALUES.search(docs.get("summary", "") + " " + docs.get("remarks", ""))
        if values:
            entry["v"] = [v.strip().strip('"') for v in values.group(1).split(",") if v.strip()]
        node["a"][name] = entry
    return node


def _output_node(types: dict[str, Any], fqn: str, depth: int = 0) -> dict[str, Any]:
    """Exported attributes (camelCase getters) of a resource or of one of its blocks."""
    node: dict[str, Any] = {}
    t = types.get(fqn, {})
    if depth > 12 or t.get("kind") != "class":
        return node
    for prop in t.get("properties", []):
        if prop.get("static") or prop.get("protected") or prop["name"].endswith("Input") \
                or prop["name"] in ("internalValue",):
            continue
        target = prop["type"].get("fqn", "")
        if target.startswith("@cdktf/provider-google."):
            listed = next((m for m in types.get(target, {}).get("methods", []) if m["name"] == "get"), None)
            if listed:   # a list of blocks: its get(i) returns the block's reference
                target = listed["returns"]["type"]["fqn"]
            node[prop["name"]] = _output_node(types, target, depth + 1)
        else:
            node[prop["name"]] = {}
    return node


def build(wheel: Path, out: Path) -> dict[str, Any]:
    assembly = _assembly(wheel)
    types = assembly["types"]
    schema: dict[str, Any] = {"provider": None, "resource": {}, "data": {}}
    for fqn, t in types.items():
        link = _LINK.search(t.get("docs", {}).get("summary", "")) if t.get("kind") == "class" else None
        if not link or f"{fqn}Config" not in types:
            continue
        version = re.search(r"hashicorp/google/([\d.]+)/", t["docs"]["summary"])
        schema["provider"] = version.group(1) if version else None
        kind = "resource" if link.group(1) == "resources" else "data"
        node = _config_node(types, f"{fqn}Config")
        node["o"] = _output_node(types, fqn)
        schema[kind][link.group(3)] = node
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(schema, separators=(",", ":")))
    tmp.replace(out)
    return schema


# -- check: HCL against the schema ---------------------------------------------------------------
def unq(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def strings(value: Any) -> list[str]:
    """Every string in parsed HCL: keys, literals and expressions."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


class Module:
    """One directory of .tf files: what it declares."""

    def __init__(self, path: Path):
        self.path = path
        self.files = {p: hcl2.load(p.open()) for p in sorted(path.glob("*.tf"))}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: set[str] = set()
        self.locals: set[str] = set()
        self.resources: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
        self.data: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
        self.modules: dict[str, tuple[Path, dict[str, Any]]] = {}
        for file, parsed in self.files.items():
            for block in parsed.get("variable", []):
                self.variables.update({unq(k): v for k, v in block.items()})
            for block in parsed.get("output", []):
                self.outputs.update(unq(k) for k in block)
            for block in parsed.get("locals", []):
                self.locals.update(k for k in block if k not in _PARSER_KEYS)
            for kind, into in (("resource", self.resources), ("data", self.data)):
                for block in parsed.get(kind, []):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            into[(unq(rtype), unq(name))] = (file, body)
            for block in parsed.get("module", []):
                for name, body in block.items():
                    self.modules[unq(name)] = (file, body)


def _check_body(body: dict[str, Any], node: dict[str, Any], where: str, problems: list[str]) -> None:
    given = {k for k in body if k not in _PARSER_KEYS}
    dynamic = {unq(name): spec for d in body.get("dynamic", []) for name, spec in d.items() if name not in _PARSER_KEYS}
    for key in sorted(given - META_ARGUMENTS - {"dynamic"}):
        value = body[key]
        is_block = isinstance(value, list) and value and all(isinstance(v, dict) and v.get("__is_block__")
                                                              for v in value)
        if key in node["b"]:
            if not is_block:
                problems.append(f"{where}: `{key}` is a block; write `{key} {{ ... }}`, not an argument")
                continue
            for inner in value:
                _check_body(inner, node["b"][key]["n"], f"{where}.{key}", problems)
        elif key in node["a"]:
            if is_block:
                problems.append(f"{where}: `{key}` is an argument, not a block")
                continue
            allowed = node["a"][key].get("v")
            if allowed:
                literal = unq(value) if isinstance(value, str) and not value.startswith("${") else None
                branches = re.fullmatch(r'\$\{[^?]*\?\s*"([^"]*)"\s*:\s*"([^"]*)"\s*\}', value) \
                    if isinstance(value, str) else None
                for v in ([literal] if literal is not None else list(branches.groups()) if branches else []):
                    if v not in allowed:
                        problems.append(f"{where}: `{key} = \"{v}\"` is not one of {allowed}")
        else:
            problems.append(f"{where}: unknown argument or block `{key}`")
    for name, spec in dynamic.items():
        if name not in node["b"]:
            problems.append(f"{where}: dynamic `{name}` is not a block of this resource")
            continue
        for content in spec.get("content", []):
            _check_body(content, node["b"][name]["n"], f"{where}.{name}", problems)
    for name, entry in {**node["a"], **node["b"]}.items():
        if entry["r"] and name not in given and name not in dynamic:
            problems.append(f"{where}: required `{name}` is missing")


_REF = re.compile(r"(?<![\w.])(var|local|module|data)\.([\w-]+)((?:\[[^\]]*\])?(?:\.[\w-]+(?:\[[^\]]*\])?)*)")
_RES_REF = re.compile(r"(?<![\w.])(google_\w+)\.([\w-]+)((?:\[[^\]]*\])?(?:\.\w+(?:\[[^\]]*\])?)*)")


def _attribute_path(node: dict[str, Any], rest: str, where: str, problems: list[str], what: str) -> None:
    """Follow ``[i].attr[j].attr`` through exported attributes."""
    for attr in re.findall(r"\.(\w+)", re.sub(r"\[[^\]]*\]", "", rest)):
        camel = _camel(attr)
        if camel not in node:
            problems.append(f"{where}: {what} exports no attribute `{attr}`")
            return
        node = node[camel]
        if not node:
            return


def _check_references(module: Module, schema: dict[str, Any], modules: dict[Path, Module], root: Path,
                      problems: list[str]) -> None:
    for file, parsed in module.files.items():
        where = str(file.relative_to(root))
        # a `moved` block names the old address, which is no longer declared on purpose
        for text in strings({block: body for block, body in parsed.items() if block != "moved"}):
            for kind, name, rest in _REF.findall(text):
                if kind == "var" and name not in module.variables:
                    problems.append(f"{where}: `var.{name}` is not a declared variable")
                elif kind == "local" and name not in module.locals:
                    problems.append(f"{where}: `local.{name}` is not defined")
                elif kind == "module":
                    if name not in module.modules:
                        problems.append(f"{where}: `module.{name}` is not declared")
                        continue
                    source = unq(module.modules[name][1].get("source", ""))
                    child = modules.get((module.path / source).resolve())
                    output = re.match(r"(?:\[[^\]]*\])?\.([\w-]+)", rest)
                    if child and output and output.group(1) not in child.outputs:
                        problems.append(f"{where}: module `{name}` ({source}) has no output `{output.group(1)}`")
                elif kind == "data":
                    m = re.match(r"\.([\w-]+)((?:\[[^\]]*\])?(?:\.\w+(?:\[[^\]]*\])?)*)", rest)
                    if not m or name.startswith(UNCHECKED_PROVIDERS):
                        continue
                    if (name, m.group(1)) not in module.data:
                        problems.append(f"{where}: `data.{name}.{m.group(1)}` is not declared")
                    elif name in schema["data"]:
                        _attribute_path(schema["data"][name]["o"], m.group(2), where, problems,
                                        f"data.{name}.{m.group(1)}")
            for rtype, name, rest in _RES_REF.findall(text):
                if (rtype, name) not in module.resources:
                    problems.append(f"{where}: `{rtype}.{name}` is not declared in this module")
                elif rtype in schema["resource"]:
                    _attribute_path(schema["resource"][rtype]["o"], rest, where, problems, f"{rtype}.{name}")


def check(schema: dict[str, Any], root: Path) -> list[str]:
    """Every problem found under ``root`` (a terraform/ directory), as ``file: message`` lines."""
    problems: list[str] = []
    modules = {p.parent.resolve(): Module(p.parent) for p in sorted({f.parent / "x" for f in root.rglob("*.tf")
                                                                     if ".terraform" not in f.parts})}
    for module in modules.values():
        for kind, declared in (("resource", module.resources), ("data", module.data)):
            for (rtype, name), (file, body) in declared.items():
                where = f"{file.relative_to(root)}: {kind} {rtype}.{name}"
                if rtype.startswith(UNCHECKED_PROVIDERS):
                    continue
                if rtype not in schema[kind]:
                    problems.append(f"{where}: no such {kind} type in google provider {schema['provider']}")
                    continue
                _check_body(body, schema[kind][rtype], where, problems)
        for name, (file, body) in module.modules.items():
            child = modules.get((module.path / unq(body.get("source", ""))).resolve())
            where = f"{file.relative_to(root)}: module {name}"
            if child is None:
                problems.append(f"{where}: source {unq(body.get('source'))} is not a module under {root}")
                continue
            for arg in sorted(set(body) - MODULE_META - set(_PARSER_KEYS)):
                if arg not in child.variables:
                    problems.append(f"{where}: `{arg}` is not a variable of {unq(body['source'])}")
            for var, spec in child.variables.items():
                if "default" not in spec and var not in body:
                    problems.append(f"{where}: required variable `{var}` is not set")
        _check_references(module, schema, modules, root, problems)
    return problems


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "build":
        schema = build(Path(argv[1]), Path(argv[2]))
        print(f"google provider {schema['provider']}: {len(schema['resource'])} resources, "
              f"{len(schema['data'])} data sources → {argv[2]}")
        return 0
    if len(argv) >= 2 and argv[0] == "check":
        schema = json.loads(Path(argv[1]).read_text())
        root = Path(argv[2] if len(argv) > 2 else "terraform")
        problems = check(schema, root)
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) in {root} against google provider {schema['provider']}")
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
