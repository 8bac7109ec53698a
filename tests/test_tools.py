"""The console and the inspector, driven as a user drives them: subprocesses with piped input."""
import json
import os
import subprocess
import time

import pytest

from kvstore.core.config import CHECKOUT
from kvstore.testing.localcluster import wait_for
from kvstore.storage.users_file import add_user, users_path
from kvstore_rpc import ttypes
from kvstore_rpc.ttypes import Cell, ConsistencyLevel, Mutation

QUORUM, ALL = ConsistencyLevel.QUORUM, ConsistencyLevel.ALL
CLIENT = "src/client.py"


def console(cluster, script, *args):
    return cluster.run_tool(CLIENT, "--cluster", cluster.cluster_file, *args, stdin=script)


def test_console_script_puts_gets_and_reports_errors(shared_cluster):
    out = console(shared_cluster, "\n".join([
        "put fruit apple quorum",
        'put "two words" "a value with spaces"',
        "get fruit",
        'get "two words" quorum',
        "get missing quorum",
        "consistency",
        "consistency quorum",
        "consistency",
        "endpoints fruit",
        "help",
    ]) + "\n")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "kvstore>" not in out.stdout  # no prompt when stdin is not a terminal
    assert lines[0].startswith("OK  [timestamp ") and "at QUORUM]" in lines[0]
    assert lines[2].startswith("apple  [timestamp ") and "at ONE]" in lines[2]
    assert lines[3].startswith("a value with spaces  [") and "at QUORUM" in lines[3]
    assert lines[4].startswith("(not found)  [from nodes")
    assert lines[5:8] == ["Current consistency level is ONE.", "Consistency level set to QUORUM.",
                          "Current consistency level is QUORUM."]
    replicas = shared_cluster.replicas(b"fruit")
    assert lines[8:11] == [f"127.0.0.1:{shared_cluster.nodes[i].port}  node {i}  up" for i in replicas]
    assert "put KEY VALUE [LEVEL] [ttl SECONDS]" in out.stdout


def test_console_deletes_expires_batches_scans_and_keeps_a_session(shared_cluster):
    out = console(shared_cluster, "\n".join([
        "mput t:a 1 t:b 2 t:c 3 quorum",
        "put t:d 4 quorum ttl 600",
        "delete t:b quorum",
        "mget t:a t:b t:d quorum",
        "ttl t:d",
        "ttl t:a",
        "expire t:a 300",
        "expire t:nothing 5",
        'scan t: t; limit 2',
        'scan t: t;',
        "session off",
        "session",
    ]) + "\n")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [["t:a", "OK"], ["t:b", "OK"], ["t:c", "OK"]]
    assert lines[3].startswith("OK  [timestamp ") and lines[3].endswith("at QUORUM, expires in 600 s]")
    assert lines[4].startswith("OK  [deleted: tombstone timestamp ")
    assert lines[5].startswith("t:a  1  [") and lines[6] == "t:b  (not found)" and lines[7].startswith("t:d  4  [")
    assert lines[8] in ("600", "599") and lines[9] == "-1  (the key never expires)"
    assert lines[10].startswith("OK  [expires in 300 s, timestamp ")
    assert lines[11] == "(not found)  [nothing to expire]"
    assert [line.split()[0] for line in lines[12:14]] == ["t:a", "t:c"]
    assert lines[14] == '(2 keys, more remain)  next page: scan "t:c\\x00" t; limit 2'
    assert [line.split()[0] for line in lines[15:18]] == ["t:a", "t:c", "t:d"] and lines[18] == "(3 keys)"
    assert lines[19:] == ["Read-your-writes session is off.", "Read-your-writes session is off."]


def test_console_pages_a_long_scan_and_stops_when_asked(shared_cluster):
    from io import StringIO
    from kvstore.tools.console import PAGE_SIZE, Console
    out, asked = StringIO(), []
    with shared_cluster.client() as kv:
        kv.mput({b"page:%03d" % i: b"v" for i in range(PAGE_SIZE * 2 + 5)}, "QUORUM")
        console = Console(kv, out=out, ask_more=lambda: asked.append(1) or len(asked) < 2)
        assert console.execute('scan page: page; quorum')
    rows = out.getvalue().splitlines()
    assert len(asked) == 2 and len(rows) == PAGE_SIZE * 2 + 1 and rows[-1] == (
        f'({PAGE_SIZE * 2} keys, more remain)  next page: scan "page:039\\x00" page; quorum')
    assert rows[0].startswith("page:000") and rows[PAGE_SIZE * 2 - 1].startswith("page:039")


def test_console_exits_non_zero_when_a_command_fails_and_names_the_error(shared_cluster):
    out = console(shared_cluster, 'put "" x\nput k v sometimes\nfrobnicate\nget k\n')
    assert out.returncode == 1
    assert out.stdout.splitlines()[:3] == [
        "Error: InvalidRequest: the key must not be empty",
        "Error: unknown consistency level 'sometimes': use one, quorum or all",
        "Error: unknown command frobnicate; type help for the list",
    ]
    assert "Traceback" not in out.stdout + out.stderr


def test_console_moves_to_another_node_when_its_coordinator_dies(cluster):
    node0 = cluster.nodes[0]
    proc = subprocess.Popen(["python3", CLIENT, "--cluster", str(cluster.cluster_file),
                             "--node", node0.address], cwd=CHECKOUT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("put survivor yes quorum\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("OK")
        cluster.crash_and_notice(0)
        proc.stdin.write("get survivor quorum\n")
        proc.stdin.close()
        assert proc.stdout.readline().startswith("yes  [")
        assert proc.wait(30) == 0
        assert f"node {node0.address} is gone; now connected to" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait(10)


def test_console_with_the_whole_cluster_down_says_so(cluster):
    for i in range(4):
        cluster.crash(i)
    out = console(cluster, "get x\n")
    assert out.returncode == 1
    assert out.stdout.startswith("Error: no node of the cluster answers (tried ")


def inspect(cluster, *args):
    out = cluster.run_tool("inspector.py", "--cluster", cluster.cluster_file, *args)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout


def test_inspector_shows_every_replica_and_marks_divergence(cluster):
    key = cluster.key_for([1, 2, 3], prefix=b"insp")
    cluster.call(0, "put", key, b"v" * 100, QUORUM)
    binary = b"\xff\xfe-binary"
    cluster.call(0, "put", binary, b"\xff\x00", QUORUM)  # replicas 0, 1, 2 (wraps)
    wait_for(lambda: all(cluster.cell_on(i, key) for i in (1, 2, 3)), 5, "the write on every replica")
    # Make node 3 hold something newer that nodes 1 and 2 lack, as a lost message would.
    cluster.call(3, "replica_write", Mutation(key, Cell(b"only-on-3", int(time.time() * 1e6) + 100_000)))

    text = inspect(cluster)
    assert "node 1  127.0.0.1:" in text and " up " in text
    assert "v" * 39 + "…" in text                    # long values are cut short
    assert '"\\xff\\xfe-binary"' in text              # non-UTF-8 keys in the console's notation
    assert f"* {key.decode()}: stale on node 1" in text and "stale on node 2" in text
    assert "1 divergent" in text

    one = inspect(cluster, "--key", key.decode())
    assert "only-on-3" in one and "stale on node 1" in one

    report = json.loads(inspect(cluster, "--json"))
    assert report["divergent"] == 1
    def keys_of(i):
        return {k["key"] if isinstance(k["key"], str) else k["key"]["hex"]: k for k in report["nodes"][i]["keys"]}
    assert keys_of(3)[key.decode()]["value"] == "only-on-3"
    assert keys_of(0)[binary.hex()]["value"] == {"hex": "ff00"}
    assert report["nodes"][3]["log_bytes"] > 0

    # A QUORUM read repairs the stale replicas; the inspector then sees no divergence.
    cluster.call(0, "get", key, QUORUM)
    wait_for(lambda: json.loads(inspect(cluster, "--json"))["divergent"] == 0, 10, "the repair")


def test_inspector_reports_a_down_node_as_down(cluster):
    cluster.crash_and_notice(2)
    cluster.call(0, "put", cluster.key_for([1, 2, 3]), b"x", QUORUM)
    text = inspect(cluster)
    assert "node 2  127.0.0.1:" in text and "DOWN" in text
    assert "pending hints: node 2: 1" in text
    report = json.loads(inspect(cluster, "--json"))
    assert report["nodes"][2]["up"] is False and report["nodes"][2]["error"]


def test_a_replica_is_read_a_page_at_a_time_and_nothing_is_missed(shared_cluster):
    from kvstore.tools.inspector import dump_replica
    from kvstore.net.wire import from_cell
    with shared_cluster.client() as kv:
        kv.mput({b"\x20page-%02d" % i: b"v%d" % i for i in range(25)}, "ALL")
        kv.delete(b"\x20page-07", "ALL")
    node = shared_cluster.nodes[0]
    first = shared_cluster.call(0, "dump", None, b"", 4)
    assert len(first.cells) == 4 and first.next_start == first.cells[-1].key + b"\x00"
    paged = dump_replica((node.host, node.port), shared_cluster.credentials, page=4)
    whole = {m.key: from_cell(m.cell) for m in shared_cluster.dump(0).cells}
    assert paged.cells == whole and len(whole) >= 25 and whole[b"\x20page-07"].value is None


def run_bytes(argv, stdin=b""):
    argv = [a if isinstance(a, bytes) else str(a) for a in argv]   # bytes reach argv as they are
    return subprocess.run(["python3", *argv], cwd=CHECKOUT, input=stdin, capture_output=True, timeout=60)


def test_binary_keys_and_values_are_typed_and_shown_in_one_notation(shared_cluster):
    # Raw bytes typed (as printf sends them), then the same bytes in the notation the console prints.
    script = (b"put \xff\xfe raw quorum\n"
              b'get "\\xff\\xfe" quorum\n'
              b'put 0xfffe00 text quorum\n'
              b'put "\\xff\\xfe\\x00" "\\x00\\x01 bytes" quorum\n'
              b"get 0xfffe00 quorum\n"
              b'mget "\\xff\\xfe\\x00" quorum\n'
              b"put ok yes\n")
    out = run_bytes([CLIENT, "--cluster", shared_cluster.cluster_file], script)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.decode().splitlines()
    assert lines[1].startswith("raw  [timestamp ")
    assert lines[4].startswith("text  [timestamp ")                   # the text key, not the bytes it spells
    assert lines[5].startswith(r'"\xff\xfe\x00"  "\x00\x01 bytes"  [timestamp ')
    assert lines[6].startswith("OK  [")                                  # the console went on to the end
    assert shared_cluster.cell_on(shared_cluster.replicas(b"\xff\xfe")[0], b"\xff\xfe").value == b"raw"

    for key_argument in (b"\xff\xfe", rb'"\xff\xfe"'):                   # raw bytes, or the notation
        shown = run_bytes(["inspector.py", "--cluster", shared_cluster.cluster_file, "--key", key_argument])
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.decode().startswith('key "\\xff\\xfe"\n') and b"raw" in shown.stdout
    listing = run_bytes(["inspector.py", "--cluster", shared_cluster.cluster_file]).stdout.decode()
    assert "    0xfffe00 " in listing and '    "\\xff\\xfe\\x00" ' in listing


def test_a_scan_with_more_to_come_prints_the_command_that_continues_it(shared_cluster):
    with shared_cluster.client() as kv:
        kv.mput({b"cont:%d" % i: b"v" for i in range(5)}, "QUORUM")
    pages, command, seen = 0, "scan cont: cont; limit 2 quorum", []
    while command:
        out = console(shared_cluster, command + "\n")
        assert out.returncode == 0, out.stdout + out.stderr
        *rows, last = out.stdout.splitlines()
        seen += [row.split()[0] for row in rows]
        command = last.split("next page: ", 1)[1] if "next page: " in last else None
        pages += 1
    assert pages == 3 and seen == [f"cont:{i}" for i in range(5)] and last == "(1 key)"


def test_console_mistakes_get_plain_errors_without_python_reprs(shared_cluster):
    out = console(shared_cluster, 'scan "" "" limit\nscan b a\nput "open x\n')
    assert out.stdout.splitlines() == [
        "Error: limit needs a number: scan START END [limit N] [one|quorum|all]",
        "Error: InvalidRequest: the scan's start b is after its end a (an empty end scans to the end of the key space)",
        'Error: cannot read the line: a double quote is not closed (type \\" for a quote inside one)',
    ]


def test_inspector_counts_in_words_and_fails_when_no_node_answers(cluster):
    cluster.call(0, "put", b"\x05only", b"x", ALL)
    text = inspect(cluster)
    assert "\n1 key, 0 divergent\n" in text and "unverified" not in text and "  up  1 key  " in text
    for i in range(4):
        cluster.crash(i)
    out = cluster.run_tool("inspector.py", "--cluster", cluster.cluster_file)
    assert out.returncode == 1 and "no node of the cluster answers" in out.stderr


def test_console_checks_numbers_and_escapes_before_sending_and_never_exits(shared_cluster):
    out = console(shared_cluster, "\n".join([
        "put big v ttl 999999999999",
        "expire big 99999999999",
        'put k "\\xZZ"',
        "put k v quorum",
        "expire k -1 quorum",
        "get k quorum",
    ]) + "\n")
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[:3] == [
        "Error: InvalidRequest: ttl_seconds must be a whole number from -2147483648 to 2147483647 (the IDL's "
        "32-bit type), not 999999999999",
        "Error: InvalidRequest: seconds must be a whole number from -2147483648 to 2147483647 (the IDL's 32-bit "
        "type), not 99999999999",
        "Error: cannot read the line: a bad escape at byte 7: \\x needs two hex digits (\\x00 to \\xff), not \\xZZ",
    ]
    assert lines[3].startswith("OK  [") and lines[4].startswith("OK  [deleted: ")   # <= 0 deletes, as the node does
    assert lines[5].startswith("(not found)")
    from kvstore.client.client import Client
    from kvstore.core.errors import InvalidRequest
    with shared_cluster.client() as kv:   # the client library checks the same, and sends nothing
        with pytest.raises(InvalidRequest, match="ttl_seconds must be a whole number from"):
            kv.put(b"big", b"v", ttl=10 ** 12)
        assert isinstance(kv, Client) and kv.get(b"big") is None


def test_console_names_what_the_user_typed_and_each_error_once(shared_cluster):
    add_user(users_path(shared_cluster.cluster_file), "looker", "read", "looker-secret")
    env = dict(os.environ, KVSTORE_USER="looker", KVSTORE_PASSWORD="looker-secret")
    out = subprocess.run(["python3", CLIENT, "--cluster", str(shared_cluster.cluster_file)], cwd=CHECKOUT,
                         input="delete k\nmput a 1 b 2\nget k all\n", capture_output=True, text=True, env=env,
                         timeout=60)
    lines = out.stdout.splitlines()
    assert lines[0] == "Error: Unauthorized: user 'looker' has role read, and writes need role readwrite"
    assert lines[1] == "Error: Unauthorized: user 'looker' has role read, and writes need role readwrite"
    assert "remove" not in out.stdout and "multi_put" not in out.stdout
    with pytest.raises(ttypes.InvalidRequest) as refused:
        shared_cluster.call(0, "dump", None, b"", -1)
    assert refused.value.why == "a dump's limit is a count of cells (0: no count), not -1"


def test_inspector_counts_live_keys_apart_and_the_log_as_it_is_on_disk(cluster):
    cluster.call(0, "put", b"\x05live", b"x", ALL)
    cluster.call(0, "put", b"\x05gone", b"x", ALL)
    cluster.call(0, "remove", b"\x05gone", ALL)
    cluster.call(0, "put", b"\x05brief", b"x", ALL, 1)
    time.sleep(1.1)   # the ttl itself: the cell expires on every replica's clock
    text = inspect(cluster)
    assert "  up  1 key (and 1 tombstone, 1 expired)  log " in text, text
    report = json.loads(inspect(cluster, "--json"))
    node = report["nodes"][0]
    assert (node["key_count"], node["tombstones"], node["expired"]) == (1, 1, 1)
    assert node["log_bytes"] == (cluster.node_dir(0) / "commit.log").stat().st_size > node["log_record_bytes"] > 0
