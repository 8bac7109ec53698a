"""Checks on the project itself: generated code is current, the accelerator loads, imports point one way."""
import ast
import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "kvstore"

# Modules that must not speak Thrift: the core, the storage, and the coordinator's logic (replicas.py and
# batching.py are where the cluster meets the wire).
PURE = ({f"{layer}/{p.stem}" for layer in ("core", "storage") for p in (PACKAGE / layer).glob("*.py")}
        | {f"cluster/{name}" for name in ("coordinator", "fanout", "write", "read_repair", "scan", "scan_pages",
                                          "quorum", "failure", "handoff")}
        | {"client/results", "node/loopcheck"})
THRIFT_MODULES = {"thrift", "kvstore_rpc"}


@pytest.mark.skipif(shutil.which("thrift") is None, reason="the Thrift compiler is not installed")
def test_gen_py_is_what_the_compiler_makes_of_kvstore_thrift(tmp_path):
    subprocess.run(["thrift", "--gen", "py", "-out", str(tmp_path), str(ROOT / "kvstore.thrift")],
                   check=True, capture_output=True)
    stale = []

    def compare(dc):
        stale.extend(dc.left_only + dc.right_only + dc.diff_files)
        for sub in dc.subdirs.values():
            compare(sub)
    compare(filecmp.dircmp(tmp_path, ROOT / "gen-py", ignore=["__pycache__"]))
    assert not stale, f"gen-py/ is stale ({stale}): run thrift --gen py -out gen-py kvstore.thrift"


def test_the_thrift_c_accelerator_loads():
    from thrift.protocol import fastbinary  # noqa: F401 -- ImportError here means pure-Python speed


def imports_of(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module.split(".")[0] if node.level == 0 else "kvstore"


@pytest.mark.parametrize("module", sorted(PURE))
def test_core_modules_do_not_touch_thrift(module):
    assert not set(imports_of(PACKAGE / f"{module}.py")) & THRIFT_MODULES


# A layer, and the layers its modules may import (its own included). "node.options" is the node's command line
# (argparse over core): the launcher checks options with the node's own parser before it starts anyone.
PRODUCT = {"core", "storage", "net", "cluster", "service", "node", "client", "tools"}
MAY_IMPORT = {
    "core": {"core"},
    "storage": {"core", "storage"},
    "net": {"core", "net"},
    "cluster": {"core", "storage", "net", "cluster"},
    "service": {"core", "storage", "net", "cluster", "service"},
    "node": {"core", "storage", "net", "cluster", "service", "node", "node.options"},
    "client": {"core", "net", "client"},
    "tools": {"core", "storage", "net", "client", "tools", "node.options"},
    "testing": PRODUCT | {"testing", "node.options"},
}


def kvstore_imports(path):
    """(module, [names]) of each `from kvstore... import` in path (a relative import counts as kvstore's)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kvstore":
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("kvstore.") for a in node.names), f"{path}: use from kvstore... import"


def layer_of(path):
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def imported_layer(module, names):
    """The layer (or, for node.options, the module) a `from module import names` reaches."""
    parts = module.split(".")[1:]
    if parts[:2] == ["node", "options"] or (parts == ["node"] and names == ["options"]):
        return "node.options"
    return parts[0] if parts else names[0]


def test_the_package_root_holds_few_modules():
    assert len(list(PACKAGE.glob("*.py"))) <= 12
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == PRODUCT | {"testing"}


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_imports_point_down_the_layers(layer):
    """core <- storage <- cluster <- service <- node; net uses core; client uses net and core; tools use client,
    net, storage and core; nothing in the product imports testing/ (chaos, the benchmark, the local cluster)."""
    wrong = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module, names in kvstore_imports(path):
            reached = imported_layer(module, names)
            if reached not in MAY_IMPORT[layer]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module} ({', '.join(names)})")
    assert not wrong, f"{layer} may import only {sorted(MAY_IMPORT[layer])}: " + "; ".join(wrong)


def test_every_layer_says_what_it_is_and_what_it_may_import():
    for layer in MAY_IMPORT:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text())) or ""
        assert "may import" in doc.lower(), f"kvstore/{layer}/__init__.py: say what the layer is and what it may import"


def test_no_private_name_is_imported_across_modules():
    wrong = [f"{path.relative_to(ROOT)}: {name} from {module}"
             for root in (PACKAGE, ROOT / "tests") for path in root.rglob("*.py")
             for module, imported in kvstore_imports(path) for name in imported if name.startswith("_")]
    assert not wrong, wrong


def test_only_the_composition_root_builds_the_object_graph():
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "node":
            continue
        for module, _ in kvstore_imports(path):
            assert module != "kvstore.node.node", f"{path.name} imports the composition root"


def test_modules_stay_small():
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 320, f"{path.relative_to(PACKAGE)} has {lines} lines: find the new noun it is hiding"


def node_modules():
    """The package's modules a node process imports, from kvstore.node.node down, as paths under kvstore/."""
    seen, todo = set(), ["node/node"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        source = PACKAGE / f"{name}.py"
        if not source.exists():
            continue
        for module, names in kvstore_imports(source):
            path = "/".join(module.split(".")[1:])
            todo += [path] if (PACKAGE / f"{path}.py").exists() else [f"{path}/{n}" for n in names]
            todo += [f"{'/'.join(path.split('/')[:i])}/__init__" for i in range(1, len(path.split('/')) + 1)]
    return {name.removesuffix("/__init__") for name in seen
            if (PACKAGE / f"{name}.py").exists()}


def test_a_node_imports_no_tool_no_client_no_test_code_and_no_threaded_server():
    modules = node_modules()
    assert {"node/node", "net/server", "net/peer_link", "storage/store", "cluster/coordinator"} <= modules
    wrong = sorted(m for m in modules if m.split("/")[0] in ("tools", "client", "testing") or m == "net/blocking"
                   or m == "net/frames")
    assert not wrong, f"a node process would import {wrong}"


def test_a_node_starts_no_daemon_thread():
    """Every thread a node starts has an owner that joins it: none is a daemon left to die with the process."""
    modules = node_modules()
    for name in sorted(modules):
        path = PACKAGE / f"{name}.py" if (PACKAGE / f"{name}.py").exists() else PACKAGE / name / "__init__.py"
        assert "daemon=True" not in path.read_text(), f"{name}.py starts a daemon thread"
