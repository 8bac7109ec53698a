"""server.sh and terminate_servers.py as a user runs them, on their own data directory and ports."""
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys

import psutil
import pytest

from kvstore.core.config import CHECKOUT
from kvstore.tools import processes
from kvstore.testing.ports import consecutive_free_ports


@pytest.fixture
def env(tmp_path):
    data = tmp_path / "data"
    environment = dict(os.environ, KVSTORE_DATA_DIR=str(data), KVSTORE_BASE_PORT=str(consecutive_free_ports(4)))
    environment.pop("KVSTORE_REEXEC", None)
    yield environment
    subprocess.run(["python3", "terminate_servers.py"], cwd=CHECKOUT, env=environment, timeout=60)


def run(env, *argv, stdin=None):
    return subprocess.run(list(argv), cwd=CHECKOUT, env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)


def states(env):
    out = run(env, "./server.sh", "status")
    return [line.split()[2] for line in out.stdout.splitlines()[1:] if line[:1].isdigit()]


def test_server_sh_crash_restart_workflow_keeps_the_data(env):
    data = env["KVSTORE_DATA_DIR"]
    started = run(env, "./server.sh")
    assert started.returncode == 0, started.stdout + started.stderr
    assert os.path.exists(os.path.join(data, "cluster.txt")) and states(env) == ["up"] * 4
    cluster = f"{data}/cluster.txt"

    assert run(env, "python3", "src/client.py", "--cluster", cluster, stdin="put walk through quorum\n").returncode == 0
    crashed = run(env, "./server.sh", "crash", "1")
    assert "crashed node 1 (SIGKILL" in crashed.stdout
    assert states(env) == ["up", "down", "up", "up"]
    assert run(env, "./server.sh", "crash", "1").returncode == 1  # not running: said, not ignored

    assert run(env, "./server.sh", "restart", "1").returncode == 0
    assert run(env, "./server.sh", "stop", "2").stdout.startswith("stopped node 2")
    assert states(env) == ["up", "up", "down", "up"]
    assert run(env, "./server.sh", "start").returncode == 0   # starts only what is down
    assert states(env) == ["up"] * 4

    for i in range(4):  # every node crashes: start brings the same data back
        run(env, "./server.sh", "crash", str(i))
    assert run(env, "./server.sh", "start").returncode == 0
    got = run(env, "python3", "src/client.py", "--cluster", cluster, stdin="get walk quorum\n")
    assert got.stdout.startswith("through  ["), got.stdout + got.stderr

    assert "already describes 4 nodes" in run(env, "./server.sh", "start", "5").stderr


def test_terminate_servers_stops_our_nodes_and_leaves_foreign_processes_alone(env, tmp_path):
    data = env["KVSTORE_DATA_DIR"]
    assert run(env, "./server.sh").returncode == 0
    pids = [processes.find_node(f"{data}/node{i}").pid for i in range(4)]
    sleeper = "import time; time.sleep(120)"
    bystander = subprocess.Popen([sys.executable, "-c", sleeper])
    # A pid file that names a live process which is not our node (as after a pid is reused).
    impostor = subprocess.Popen([sys.executable, "-c", sleeper, "src/server.py"])
    try:
        run(env, "./server.sh", "stop", "3")
        created = psutil.Process(impostor.pid).create_time()
        (tmp_path / "data" / "node3" / "node.pid").write_text(f"{impostor.pid} {created}\n")

        out = run(env, "python3", "terminate_servers.py")
        assert out.returncode == 0, out.stderr
        assert "node0: stopped (pid" in out.stdout and "node3: not running" in out.stdout
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                       for p in pids[:3])
        assert bystander.poll() is None and impostor.poll() is None

        purged = run(env, "python3", "terminate_servers.py", "--purge")
        assert f"deleting {data}" in purged.stdout and not os.path.exists(data)
    finally:
        for proc in (bystander, impostor):
            proc.kill()
            proc.wait(10)


def log_digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_node_started_by_hand_owns_its_data_directory_and_the_tools_find_it(env, tmp_path):
    """Two processes on one data directory destroyed acknowledged writes: the second replayed and cut
    the live node's log. Now the first holds the directory's lock; the tools see it however it started."""
    data = tmp_path / "data"
    assert run(env, "./server.sh").returncode == 0
    assert run(env, "./server.sh", "stop", "0").returncode == 0
    # As the README shows: no --data-dir on the command line, the cluster file found by default.
    with open(tmp_path / "by-hand.log", "wb") as log:
        by_hand = subprocess.Popen(["python3", "src/server.py", "--id", "0"], cwd=CHECKOUT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        processes.wait_until(lambda: states(env)[0] == "up", 30)
        status = run(env, "./server.sh", "status").stdout.splitlines()[1].split()
        assert status[2:4] == ["up", str(by_hand.pid)], status
        script = "".join(f"put 0-hand-{i} v{i} one\n" for i in range(50))   # keys "0..." live on node 0
        written = run(env, "python3", "src/client.py", "--node", status[1], stdin=script)
        assert written.returncode == 0, written.stdout + written.stderr
        log_before = log_digest(data / "node0" / "commit.log")

        assert run(env, "./server.sh", "start").returncode == 0        # starts nothing for node 0
        assert run(env, "./server.sh", "status").stdout.splitlines()[1].split()[3] == str(by_hand.pid)
        second = run(env, "python3", "src/server.py", "--id", "0")
        assert second.returncode == 5, second.stderr
        assert f"in use by another node process (pid {by_hand.pid})" in second.stderr
        assert log_digest(data / "node0" / "commit.log") == log_before   # not replayed, not cut

        stopped = run(env, "python3", "terminate_servers.py")
        assert f"node0: stopped (pid {by_hand.pid})" in stopped.stdout, stopped.stdout
        assert by_hand.wait(30) == 0
    finally:
        if by_hand.poll() is None:
            by_hand.kill()
            by_hand.wait(10)
    assert run(env, "./server.sh", "start").returncode == 0
    dump = json.loads(run(env, "python3", "inspector.py", "--json").stdout)
    node0 = {k["key"]: k.get("value") for k in dump["nodes"][0]["keys"]}
    assert all(node0.get(f"0-hand-{i}") == f"v{i}" for i in range(50)), node0


def node_command_lines(data):
    return [processes.find_node(f"{data}/node{i}").cmdline() for i in range(4)]


def test_node_options_after_a_double_dash_are_checked_kept_and_used_by_restart(env, tmp_path):
    data = env["KVSTORE_DATA_DIR"]
    refused = run(env, "./server.sh", "start", "--", "--commitlog-sync-period", "soon")
    assert refused.returncode == 2 and "the nodes would refuse these options" in refused.stderr
    assert "--commitlog-sync-period: invalid _seconds value: 'soon'" in refused.stderr
    assert not os.path.exists(f"{data}/cluster.txt")                         # nothing was started
    assert "sets --id, --cluster and --data-dir" in run(env, "./server.sh", "start", "--", "--id", "2").stderr

    started = run(env, "./server.sh", "start", "--", "--commitlog-sync-period", "10", "--max-connections", "64")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "node options saved in" in started.stdout
    assert all(c[-4:] == ["--commitlog-sync-period", "10", "--max-connections", "64"] for c in node_command_lines(data))
    assert "commit log synced every 10 s" in (tmp_path / "data" / "node1" / "node.log").read_text()
    assert run(env, "./server.sh", "status").stdout.splitlines()[-1].endswith(
        "node.options): --commitlog-sync-period 10 --max-connections 64")

    run(env, "./server.sh", "crash", "1")
    assert run(env, "./server.sh", "restart", "1").returncode == 0            # the saved options again
    assert node_command_lines(data)[1][-4:] == ["--commitlog-sync-period", "10", "--max-connections", "64"]
    assert run(env, "./server.sh", "restart", "2", "--", "--max-connections", "32").returncode == 0
    assert node_command_lines(data)[2][-2:] == ["--max-connections", "32"]
    assert (tmp_path / "data" / "node.options").read_text().splitlines()[1:] == ["--max-connections 32"]


def test_a_node_at_its_connection_limit_is_shown_as_up_and_refusing(env):
    assert run(env, "./server.sh", "start", "--", "--max-connections", "24").returncode == 0
    port = int(env["KVSTORE_BASE_PORT"]) + 2
    idle = []
    try:
        for _ in range(30):     # every client slot of node 2 for connections that have not logged in (24 / 8)
            idle.append(socket.create_connection(("127.0.0.1", port)))
        status = run(env, "./server.sh", "status").stdout.splitlines()
        assert status[3].split()[2] == "refusing", status
        assert status[5] == (f"node 2 is up but refusing connections: 127.0.0.1:{port} refused the connection: "
                             "the node is at its limit of 3 connections that have not logged in "
                             "(--max-unauthenticated-connections); log in promptly, or try again later")
        shown = run(env, "python3", "inspector.py")     # it reads each replica through its client port
        assert shown.returncode == 0, shown.stderr
        assert f"node 2  127.0.0.1:{port}  UP, REFUSING CONNECTIONS  (127.0.0.1:{port} refused the " \
            "connection: the node is at its limit of 3 connections" in shown.stdout
        assert f"node 1  127.0.0.1:{port - 1}  up  0 keys" in shown.stdout
    finally:
        for s in idle:
            s.close()
    processes.wait_until(lambda: states(env)[2] == "up", 30)
    assert states(env) == ["up"] * 4


def test_server_sh_makes_a_cluster_secret_only_its_owner_can_read(env, tmp_path):
    assert run(env, "./server.sh").returncode == 0
    secret = tmp_path / "data" / "cluster.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(bytes.fromhex(secret.read_text())) == 32
    assert run(env, "python3", "terminate_servers.py").returncode == 0
    secret.unlink()                                   # a cluster made before nodes proved a secret
    started = run(env, "./server.sh", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"created {secret}: the secret the nodes prove to each other" in started.stdout
    assert states(env) == ["up"] * 4


def test_server_sh_makes_an_admin_the_tools_log_in_as_and_users_with_roles(env, tmp_path):
    started = run(env, "./server.sh")
    assert started.returncode == 0, started.stdout + started.stderr
    data = tmp_path / "data"
    assert f"created {data / 'users'}: authentication is on; log in as admin" in started.stdout
    for name in ("users", "credentials"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600
    # Nothing of the cluster's can be read by another user of the machine: directories 0700, files 0600.
    for path in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"
    assert "password = " in (data / "credentials").read_text()
    short = run(env, "./server.sh", "user", "add", "writer", "--role", "readwrite", stdin="seven77\n")
    assert short.returncode == 2 and "a password is 8 to 1024 characters, not 7" in short.stderr, short.stderr
    added = run(env, "./server.sh", "user", "add", "writer", "--role", "readwrite", stdin="writer-pw\n")
    assert added.returncode == 0 and "user 'writer' has role readwrite" in added.stdout, added.stderr
    assert "writer-pw" not in (data / "users").read_text()
    as_writer = dict(env, KVSTORE_USER="writer", KVSTORE_PASSWORD="writer-pw")
    out = run(as_writer, "python3", "src/client.py", stdin="put w 1 quorum\nget w quorum\n")
    assert out.returncode == 0 and out.stdout.splitlines()[1].startswith("1  ["), out.stdout + out.stderr
    refused = run(as_writer, "python3", "inspector.py")
    assert refused.returncode == 2 and ("user 'writer' has role readwrite, and the operator's calls (dump, compact, "
                                        "repair) need role admin") in refused.stderr
    assert "all replicas agree" in run(env, "python3", "inspector.py", "--key", "w").stdout   # as the admin
    assert run(env, "./server.sh", "user", "remove", "writer").returncode == 0
    out = run(as_writer, "python3", "src/client.py", stdin="get w\n")
    assert out.returncode == 1 and "AuthenticationFailed: login failed for user 'writer'" in out.stdout
    listed = run(env, "./server.sh", "user", "list").stdout.split()
    assert listed == ["user", "role", "admin", "admin"]
    # The operator cannot lock themselves out: the last admin stays, and a new password reaches the tools.
    last = run(env, "./server.sh", "user", "remove", "admin")
    assert last.returncode == 2 and "would leave" in last.stderr and "without an admin" in last.stderr, last.stderr
    renewed = run(env, "./server.sh", "user", "add", "admin", "--role", "admin", stdin="a-new-admin-password\n")
    assert renewed.returncode == 0 and f"updated {data / 'credentials'}" in renewed.stdout, renewed.stdout
    assert "password = a-new-admin-password" in (data / "credentials").read_text()
    assert "all replicas agree" in run(env, "python3", "inspector.py", "--key", "w").stdout   # logs in with it
    assert run(env, "./server.sh", "user", "add", "ops", "--role", "admin", stdin="ops-password\n").returncode == 0
    gone = run(env, "./server.sh", "user", "remove", "admin")
    assert gone.returncode == 0 and "logs the tools in as 'admin', who is gone" in gone.stdout, gone.stdout


def test_server_sh_makes_a_local_ca_and_the_cluster_runs_with_tls_on_both_ports(env, tmp_path):
    assert run(env, "./server.sh").returncode == 0
    made = run(env, "./server.sh", "tls")
    assert made.returncode == 0 and "ca.pem (the CA)" in made.stdout, made.stdout + made.stderr
    assert "certificate and key, for 127.0.0.1, localhost)" in made.stdout, made.stdout   # each host once
    assert stat.S_IMODE((tmp_path / "data" / "tls" / "node.key").stat().st_mode) == 0o600
    assert run(env, "python3", "terminate_servers.py").returncode == 0
    started = run(env, "./server.sh", "start", "--", "--tls", "--internode-tls")
    assert started.returncode == 0, started.stdout + started.stderr
    assert states(env) == ["up"] * 4          # server.sh's own probes speak TLS too
    out = run(env, "python3", "src/client.py", "--tls", stdin="put t 1 all\nget t all\n")
    assert out.returncode == 0 and out.stdout.splitlines()[1].startswith("1  ["), out.stdout + out.stderr
    plain = run(env, "python3", "src/client.py", "--timeout", "2", stdin="get t\n")
    assert plain.returncode == 1 and "this node speaks TLS on this port: connect with TLS (add --tls)" in \
        plain.stdout + plain.stderr, plain.stdout + plain.stderr
    plain = run(env, "python3", "inspector.py")
    assert "this node speaks TLS on this port: connect with TLS (add --tls)" in plain.stdout + plain.stderr
    assert "it spoke plain text to this TLS port (a client without --tls?)" in \
        (tmp_path / "data" / "node0" / "node.log").read_text() + (tmp_path / "data" / "node1" / "node.log").read_text()
    shown = run(env, "python3", "inspector.py", "--tls", "--key", "t")
    assert shown.returncode == 0 and "all replicas agree" in shown.stdout, shown.stdout + shown.stderr
