"""The console as a person at a terminal uses it (a real pseudo-terminal), and its --timeout and --level."""
import os
import re
import select
import subprocess
import time

from kvstore.core.config import CHECKOUT

CLIENT = "src/client.py"


class Terminal:
    """The console on a pseudo-terminal: type lines, wait for text to appear (under a deadline)."""

    def __init__(self, *args, home):
        master, slave = os.openpty()
        self.proc = subprocess.Popen(["python3", CLIENT, *map(str, args)], cwd=CHECKOUT,
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env=dict(os.environ, HOME=str(home), TERM="dumb"))
        os.close(slave)
        self._master = master
        self.screen = ""

    def type(self, line):
        os.write(self._master, line.encode() + b"\n")

    def expect(self, pattern, timeout=15.0):
        """Wait until pattern appears in what the console printed since the last expect; the match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.screen)
            if found:
                self.screen = self.screen[found.end():]
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} did not appear within {timeout} s; the screen:\n{self.screen}")
            if select.select([self._master], [], [], left)[0]:
                try:
                    self.screen += os.read(self._master, 65536).decode(errors="replace").replace("\r", "")
                except OSError:   # the console exited and the terminal closed
                    time.sleep(0)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self._master)


def test_a_wait_past_a_second_says_what_it_waits_for_and_timeout_bounds_it(cluster, tmp_path):
    paused = cluster.nodes[2]
    terminal = Terminal("--cluster", cluster.cluster_file, "--node", paused.address, "--timeout", "3",
                        home=tmp_path)
    try:
        terminal.expect("kvstore> ")
        terminal.type("put k v quorum")
        terminal.expect(r"OK  \[timestamp")
        cluster.pause(2)
        started = time.monotonic()
        terminal.type("put k2 v quorum")
        terminal.expect(re.escape(f"(waiting for {paused.address} to answer put; giving up after 3 s; "
                                  "Ctrl-C to stop waiting)"), timeout=5)
        noticed = time.monotonic() - started
        terminal.expect("The write may or may not have been applied", timeout=10)
        failed = time.monotonic() - started
        assert 0.9 <= noticed < 2.5 and 2.9 <= failed < 6, (noticed, failed)
        terminal.type("consistency")
        terminal.expect("Current consistency level is ONE")
    finally:
        cluster.resume(2)
        terminal.close()


def test_a_read_through_a_stalled_node_moves_on_after_the_timeout(cluster):
    cluster.call(0, "put", b"\x10k", b"kept", 3)    # at ALL: on every replica
    cluster.pause(0)
    try:
        started = time.monotonic()
        out = cluster.run_tool(CLIENT, "--cluster", cluster.cluster_file, "--node", cluster.nodes[0].address,
                               "--timeout", "1", "--level", "quorum", stdin='get "\\x10k"\nconsistency\n')
        took = time.monotonic() - started
    finally:
        cluster.resume(0)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0].startswith("kept  [") and "at QUORUM" in out.stdout.splitlines()[0]
    assert out.stdout.splitlines()[1] == "Current consistency level is QUORUM."
    assert f"node {cluster.nodes[0].address} is gone; now connected to" in out.stderr
    assert "did not answer login: timed out" in out.stderr   # it took the connection, then answered nothing
    assert took < 8, took   # one 1 s timeout, not the default 15 s


def test_the_answer_at_a_more_prompt_is_not_kept_in_the_history(shared_cluster, tmp_path):
    with shared_cluster.client() as kv:
        kv.mput({b"hist:%02d" % i: b"v" for i in range(45)}, "QUORUM")
    terminal = Terminal("--cluster", shared_cluster.cluster_file, home=tmp_path)
    try:
        terminal.expect("kvstore> ")
        terminal.type("scan hist: hist; quorum")
        terminal.expect("---MORE---")
        terminal.type("")
        terminal.expect("---MORE---")
        terminal.type("q")
        terminal.expect(r"\(40 keys, more remain\)  next page: ")
        terminal.expect("kvstore> ")
        terminal.type("exit")
        assert terminal.proc.wait(10) == 0
    finally:
        terminal.close()
    history = (tmp_path / ".kvstore_history").read_text().splitlines()
    assert history[-2:] == ["scan hist: hist; quorum", "exit"], history
