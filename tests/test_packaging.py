"""kvstore installs as a Python user expects: `pip install` into a virtual environment of their own gives the
client library and the tools, importable and runnable from anywhere, with no sys.path edits."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "src", "gen-py")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with kvstore pip-installed into it, from a copy of the checkout's sources
    (so the build leaves nothing behind in the checkout)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "kvstore"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                           if (ROOT / name).is_dir() else {}))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                          str(source)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-3000:]
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere


def clean_environment():
    """What a user's shell has: none of the test run's paths."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KVSTORE_REEXEC", "VIRTUAL_ENV")}
    return env


def test_the_installed_library_imports_from_outside_the_checkout(installed):
    venv, elsewhere = installed
    check = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import kvstore.client, kvstore_rpc; from kvstore.client import Client, Unavailable; "
                            "print(kvstore.client.__file__)"],
                           cwd=elsewhere, env=clean_environment(), capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert str(venv) in check.stdout and str(ROOT) not in check.stdout


def test_the_installed_console_puts_and_gets_on_a_running_cluster(installed, shared_cluster):
    venv, elsewhere = installed
    for tool in ("kvstore", "kvstore-inspector", "kvstore-launcher", "kvstore-server", "kvstore-terminate"):
        assert (venv / "bin" / tool).exists(), f"no console entry point {tool}"
    console = subprocess.run([str(venv / "bin" / "kvstore"), "--cluster", str(shared_cluster.cluster_file)],
                             input="put installed yes quorum\nget installed quorum\n", cwd=elsewhere,
                             env=clean_environment(), capture_output=True, text=True, timeout=60)
    assert console.returncode == 0, console.stdout + console.stderr
    lines = console.stdout.splitlines()
    assert lines[0].startswith("OK") and lines[1].startswith("yes  ["), console.stdout
