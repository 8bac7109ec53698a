"""A node stopped with SIGTERM (as ./server.sh stop and terminate_servers.py stop it) lets what it is serving
finish or end cleanly, joins every thread it started, and closes its storage last: nothing it acknowledged
is lost, and its commit log ends clean (no torn tail to cut at the next start)."""
import threading

from kvstore.core.errors import KVStoreError
from kvstore.testing.localcluster import wait_for
from kvstore_rpc.ttypes import ConsistencyLevel

QUORUM = ConsistencyLevel.QUORUM
WRITERS = 6


def test_a_stopping_node_answers_what_it_serves_joins_every_thread_and_loses_nothing(cluster):
    acknowledged, endings, started = {}, [], threading.Barrier(WRITERS + 1)

    def writer(n):
        connection = cluster.connect(0)
        started.wait(10)
        for i in range(100_000):
            key = b"%c-stop-%d-%d" % (i % 256, n, i)
            try:
                acknowledged[key] = connection.call("put", (key, b"v", QUORUM, 0, 0), 10).timestamp
            except Exception as exc:   # the node stopped: every request must end, with an error of ours
                endings.append(exc)
                return
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    started.wait(10)
    idle = cluster.connect(0)   # logged in, and sending nothing: its thread waits for a request that never comes
    wait_for(lambda: len(acknowledged) >= 300, 20, "writes under way")   # requests in flight as the stop begins
    cluster.stop(0)
    assert idle.peer_closed()   # closed by the node, not left to the process's end
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads), "a request to the stopping node never ended"
    assert len(endings) == WRITERS and all(isinstance(exc, KVStoreError) for exc in endings), endings
    assert cluster.procs[0].returncode == 0
    log = cluster.log(0)
    assert "stopped; every thread joined" in log and "threads are still running" not in log, log

    cluster.restart(0)
    assert "torn tail" not in cluster.log(0)
    for key in list(acknowledged)[::25]:
        assert cluster.call(1, "get", key, QUORUM).cell.value == b"v"
