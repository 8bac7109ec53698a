"""The README's examples, and the walkthroughs in docs/, run as a user runs them, print what they show.

Every ```console block of README.md and docs/*.md is run from the top on a fresh cluster of its own (its
own data directory and free ports, through the same environment variables a
user may set): each `$ ` line as a shell command in the checkout, its output
(stdout and stderr, as a terminal shows both) compared with the lines under it.
What differs from run to run is compared by its shape: timestamps and dates,
pids, which replicas acknowledged first, the ports, the data directory's path,
and the width of columns. A line `...` stands for any number of lines. Each ```python block is
saved as example.py, which the console lines that follow may run. The layout
section may name only files that exist.
"""
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from kvstore.testing.ports import consecutive_free_ports

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCUMENTS = {"README.md": README, **{f"docs/{p.name}": p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}}
BLOCK = re.compile(r"^```(console|python|text)\n(.*?)^```$", re.S | re.M)
README_PORTS = range(9000, 9008)   # 4 nodes, and those the walkthroughs add
STEP_TIMEOUT = 120

VARYING = [   # (pattern, what it stands for): the same on both sides after this
    (re.compile(r"\b\d{16}\b"), "<timestamp>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} UTC"), "<time>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"^(\d+ +\S+ +\S+ +)\d+", re.M), r"\1<pid>"),        # the pid column of ./server.sh status
    (re.compile(r"(acknowledged by|from) nodes? [\d, ]+ at"), r"\1 <nodes> at"),
    (re.compile(r"\S*/data\b"), "<data>"),
    (re.compile(r"clock [+-]\d+\.\d{3} s from"), "clock <offset> s from"),   # the inspector's clock offsets
    (re.compile(r" {2,}"), "  "),   # columns: a real port may be wider than the README's 9000
]


def console_blocks(document="README.md"):
    """[(a console block, the last python block before it, or None)] of a document, in order."""
    found, python = [], None
    for kind, text in BLOCK.findall(DOCUMENTS[document]):
        if kind == "python":
            python = text
        elif kind == "console":
            found.append((text, python))
    return found


def steps(block):
    """[(command, expected lines)] of a console block."""
    found = []
    for line in block.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
    return found


def normalize(text):
    for pattern, replacement in VARYING:
        text = pattern.sub(replacement, text)
    return [line.rstrip() for line in text.splitlines()]


def matches(expected, actual):
    """expected lines, where `...` stands for any number of lines, against the actual lines."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and matches(expected[1:], actual[1:])


@pytest.fixture
def user(tmp_path):
    """The environment of a user with a cluster of their own: a data directory and free ports."""
    base = consecutive_free_ports(len(README_PORTS))
    env = dict(os.environ, KVSTORE_DATA_DIR=str(tmp_path / "data"), KVSTORE_BASE_PORT=str(base))
    env.pop("KVSTORE_REEXEC", None)
    yield env, base, tmp_path
    subprocess.run(["python3", "terminate_servers.py", "--purge"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def run_step(command, env, base, workdir):
    for i, port in enumerate(README_PORTS):
        command = command.replace(f"127.0.0.1:{port}", f"127.0.0.1:{base + i}")
    command = re.sub(r"(?<![\w/])example\.py\b", str(workdir / "example.py"), command)
    command = re.sub(r"(?<![\w/.])data/", env["KVSTORE_DATA_DIR"] + "/", command)   # the user's data directory
    # Its own process group, so that a step that runs too long is stopped with everything it started.
    step = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        printed, _ = step.communicate(timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(step.pid, signal.SIGTERM)   # the tools stop the nodes they started on SIGTERM
        try:
            step.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(step.pid, signal.SIGKILL)
            step.communicate()
        raise AssertionError(f"README: `$ {command}` ran past {STEP_TIMEOUT} s (a README example must be quick)") \
            from None
    text = printed.replace(f"{base}-{base + 3}", "9000-9003").replace(f"{base + 100}-{base + 103}", "9100-9103")
    for i, port in enumerate(README_PORTS):
        text = text.replace(f"127.0.0.1:{base + i}", f"127.0.0.1:{port}")
        text = text.replace(f"127.0.0.1:{base + 100 + i}", f"127.0.0.1:{port + 100}")
    return text.replace(env["KVSTORE_DATA_DIR"], "/data")


EXAMPLES = [(document, index) for document in DOCUMENTS for index in range(len(console_blocks(document)))]


@pytest.mark.parametrize(("document", "index"), EXAMPLES, ids=[f"{d}-{i}" for d, i in EXAMPLES])
def test_an_example_prints_what_its_document_shows(document, index, user):
    env, base, workdir = user
    block, python = console_blocks(document)[index]
    if python is not None:
        (workdir / "example.py").write_text(python)
    for command, expected in steps(block):
        actual = run_step(command, env, base, workdir)
        assert matches(normalize("\n".join(expected)), normalize(actual)), (
            f"{document}: `$ {command}` printed:\n{actual}\nIt shows:\n" + "\n".join(expected))


def test_the_readme_layout_names_only_files_that_exist():
    layout = README.split("## Layout", 1)[1]
    block = BLOCK.search(layout).group(2)
    named = [line.split()[0] for line in block.splitlines() if line.strip() and not line.startswith(" ")]
    assert named, "the layout section has no file list"
    missing = [path for path in named if not (ROOT / path).exists()]
    assert not missing, f"the README's layout names files that do not exist: {missing}"


def test_the_readme_has_examples_to_run_and_stays_a_guide():
    blocks = console_blocks()
    assert len(blocks) >= 3 and any(".venv/bin/python example.py" in block for block, _ in blocks)
    assert any(python for _, python in blocks)
    assert len(console_blocks("docs/OPERATIONS.md")) >= 2
    assert len(README.splitlines()) <= 300, "the README is a user's guide: the rest belongs in docs/"


def test_the_readme_states_the_value_limit_the_code_has():
    from kvstore.core.config import MAX_VALUE_LIMIT
    stated = re.findall(r"may not be set higher than ([\d,]+) bytes", README)
    assert stated == [f"{MAX_VALUE_LIMIT:,}"], stated
