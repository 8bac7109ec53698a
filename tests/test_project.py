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
PURE = {"errors", "config", "cell", "clock", "ring", "consistency", "records", "commitlog", "storage", "hints",
        "coordinator", "scanning", "repairing", "failure", "handoff", "clockfile", "answers", "diskworker", "tasks",
        "responses", "loopcheck"}
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
    for path in PACKAGE.glob("*.py"):
        if path.stem in ("node",):
            continue
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "kvstore.node" not in names, f"{path.name} imports the composition root"


def test_modules_stay_small():
    for path in PACKAGE.glob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 320, f"{path.name} has {lines} lines: find the new noun it is hiding"


def node_modules():
    """The package's modules a node process imports, from kvstore.node down."""
    seen, todo = set(), ["node"]
    while todo:
        name = todo.pop()
        if name in seen or not (PACKAGE / f"{name}.py").exists():
            continue
        seen.add(name)
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kvstore"):
                parts = node.module.split(".")
                todo += [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
    return seen


def test_a_node_starts_no_daemon_thread():
    """Every thread a node starts has an owner that joins it: none is a daemon left to die with the process."""
    modules = node_modules()
    assert {"node", "loopserver", "peerlink", "diskworker", "storage"} <= modules
    for name in sorted(modules):
        assert "daemon=True" not in (PACKAGE / f"{name}.py").read_text(), f"{name}.py starts a daemon thread"
