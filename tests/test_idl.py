"""kvstore.thrift is a contract for every language Thrift speaks, not only Python.

The stock compiler must generate code for each language below, and a Node.js
client made from it (with the npm thrift package) and a C++ one (compiled with
Debian's libthrift-dev) must work against real nodes.
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
CPP_CLIENT = ROOT / "tests" / "cpp_client"
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
    assert steps["before-login"]["why"].startswith("reads need a login first")
    assert steps["login"] == {"step": "login", "user": "admin", "role": "admin"}
    assert steps["put"]["acknowledged"] >= 2 and steps["put"]["timestamp"] > 0
    assert steps["get"] == {"step": "get", "value": "from node", "timestamp": steps["put"]["timestamp"]}
    assert steps["multi_put"]["ok"] == 5
    assert steps["scan"]["keys"] == [f"js:k{i}" for i in range(5)]   # three pages of at most two
    assert 595 <= steps["ttl"]["seconds"] <= 600
    assert steps["empty-key"]["raised"] == "InvalidRequest"
    assert steps["empty-key"]["why"] == "the key must not be empty"


def test_a_cpp_client_made_by_the_stock_compiler_compiles_and_works_against_real_nodes(shared_cluster, tmp_path):
    """The generated C++ is compiled, not only generated (a field named like a generated method once broke it),
    with Debian's libthrift-dev, and a client built on it does what a user's would."""
    need("thrift", "it generates the C++ client")
    need("g++", "it compiles the C++ client")
    if not Path("/usr/include/thrift/Thrift.h").exists() or not Path("/usr/include/boost").is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("libthrift-dev and libboost-dev are not installed in CI: .ci/run installs them")
        pytest.skip("libthrift-dev or libboost-dev is not installed")
    subprocess.run(["thrift", "--gen", "cpp", "-out", str(tmp_path), str(IDL)], check=True)
    built = subprocess.run(["g++", "-std=c++17", "-O0", "-I", str(tmp_path), "-o", str(tmp_path / "client"),
                            str(CPP_CLIENT / "client.cpp"), str(tmp_path / "KVStore.cpp"),
                            str(tmp_path / "kvstore_types.cpp"), "-lthrift"], capture_output=True, text=True,
                           timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    node = shared_cluster.nodes[2]
    ran = subprocess.run([str(tmp_path / "client"), node.host, str(node.port)], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, KVSTORE_USER=shared_cluster.credentials[0],
                                              KVSTORE_PASSWORD=shared_cluster.credentials[1]))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    steps = {line["step"]: line for line in map(json.loads, ran.stdout.splitlines())}
    assert steps["before-login"] == {"step": "before-login", "raised": "Unauthorized",
                                     "why": "reads need a login first: authentication is on (log in as a user "
                                            "whose role is read or above)"}
    assert steps["login"] == {"step": "login", "user": "admin", "role": "admin"}
    assert steps["put"]["acknowledged"] >= 2 and steps["put"]["timestamp"] > 0
    assert steps["get"] == {"step": "get", "value": "from c++", "timestamp": steps["put"]["timestamp"]}
    assert steps["multi_put"]["ok"] == 5
    assert steps["scan"]["keys"] == [f"cpp:k{i}" for i in range(5)]   # three pages of at most two
    assert steps["expire"]["found"] is True and steps["expire"]["timestamp"] > steps["put"]["timestamp"]
    assert steps["empty-key"] == {"step": "empty-key", "raised": "InvalidRequest", "why": "the key must not be empty"}
