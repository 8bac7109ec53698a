"""Checks on the project itself: generated code is current, the accelerator loads, imports point one way."""
import ast
import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "kvstore"

# Modules that must not speak Thrift: the storage and placement core.
PURE = {"core/errors", "core/config", "core/cell", "core/clock", "core/ring", "core/consistency", "storage/records",
        "storage/commitlog", "storage/store", "storage/hints", "cluster/coordinator", "cluster/scan", "cluster/read_repair",
        "cluster/failure", "cluster/handoff", "storage/clockfile", "client/results", "storage/diskworker", "core/tasks",
        "cluster/quorum", "node/loopcheck"}
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


def test_only_the_composition_root_builds_the_object_graph():
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "node":
            continue
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "kvstore.node.node" not in names, f"{path.name} imports the composition root"


def test_modules_stay_small():
    for path in PACKAGE.rglob("*.py"):
        if "bench" in path.parts:
            continue
        lines = len(path.read_text().splitlines())
        assert lines <= 320, f"{path.name} has {lines} lines: find the new noun it is hiding"


def node_modules():
    """The package's modules a node process imports, from kvstore.node down."""
    seen, todo = set(), ["node/node"]
    while todo:
        name = todo.pop()
        if name in seen or not (PACKAGE / f"{name}.py").exists():
            continue
        seen.add(name)
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kvstore"):
                path = "/".join(node.module.split(".")[1:])
                todo += [path] if (PACKAGE / f"{path}.py").exists() else [f"{path}/{a.name}" for a in node.names]
    return seen


def test_a_node_starts_no_daemon_thread():
    """Every thread a node starts has an owner that joins it: none is a daemon left to die with the process."""
    modules = node_modules()
    assert {"node/node", "net/server", "net/peer_link", "storage/diskworker", "storage/store"} <= modules
    for name in sorted(modules):
        assert "daemon=True" not in (PACKAGE / f"{name}.py").read_text(), f"{name}.py starts a daemon thread"
