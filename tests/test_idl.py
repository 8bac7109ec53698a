"""kvstore.thrift is a contract for every language Thrift speaks, not only Python.

The stock compiler must generate code for each language below, and a Node.js
client made from it (with the npm thrift package) must work against real nodes.
Where the compiler or Node.js is missing these tests skip, except under CI
(CI=true), where .ci/run installs them and a skip would hide a broken contract.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IDL = ROOT / "kvstore.thrift"
NODE_CLIENT = ROOT / "tests" / "node_client"
LANGUAGES = ["js:node", "go", "java", "cpp", "rs", "rb", "netstd", "php", "erl", "c_glib", "dart", "swift"]


def need(tool, why):
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed in CI: {why}")
        pytest.skip(f"{tool} is not installed: {why}")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_idl_compiles_for(language, tmp_path):
    need("thrift", "the Thrift compiler checks the IDL")
    made = subprocess.run(["thrift", "--gen", language, "-out", str(tmp_path), str(IDL)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stdout + made.stderr
    assert any(tmp_path.rglob("*")), f"the compiler made nothing for {language}"


def test_a_node_js_client_made_by_the_stock_compiler_works_against_real_nodes(shared_cluster, tmp_path):
    need("thrift", "it generates the Node.js client")
    need("node", "it runs the Node.js client")
    if not (NODE_CLIENT / "node_modules" / "thrift").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("tests/node_client/node_modules is missing: run_tests.sh installs it with npm")
        pytest.skip("the npm thrift package is not installed (run_tests.sh installs it where npm exists)")
    subprocess.run(["thrift", "--gen", "js:node", "-out", str(tmp_path), str(IDL)], check=True)
    node = shared_cluster.nodes[1]
    ran = subprocess.run(["node", str(NODE_CLIENT / "client.js"), str(tmp_path), node.host, str(node.port)],
                         capture_output=True, text=True, timeout=60, cwd=NODE_CLIENT,
                         env=dict(os.environ, NODE_PATH=str(NODE_CLIENT / "node_modules"),
                                  KVSTORE_USER=shared_cluster.credentials[0],
                                  KVSTORE_PASSWORD=shared_cluster.credentials[1]))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    steps = {line["step"]: line for line in map(json.loads, ran.stdout.splitlines())}
    assert steps["before-login"]["raised"] == "Unauthorized"
    assert steps["before-login"]["why"].startswith("Unauthorized: get needs a login first")
    assert steps["login"] == {"step": "login", "user": "admin", "role": "admin"}
    assert steps["put"]["acknowledged"] >= 2 and steps["put"]["timestamp"] > 0
    assert steps["get"] == {"step": "get", "value": "from node", "timestamp": steps["put"]["timestamp"]}
    assert steps["multi_put"]["ok"] == 5
    assert steps["scan"]["keys"] == [f"js:k{i}" for i in range(5)]   # three pages of at most two
    assert 595 <= steps["ttl"]["seconds"] <= 600
    assert steps["empty-key"]["raised"] == "InvalidRequest"
    assert steps["empty-key"]["why"] == "the key must not be empty"
