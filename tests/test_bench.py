"""The benchmark completes and reports sane numbers (never a speed: speed is for the benchmark itself)."""
import json
import subprocess

from kvstore.core.config import CHECKOUT
from kvstore.testing.bench.layers import measure_layers
from kvstore.testing.bench.run import spawn_floor
from kvstore.testing.ports import free_ports
from kvstore.net.blocking import Connection
from kvstore_rpc import ttypes


def test_a_short_benchmark_run_reports_every_cell():
    out = subprocess.run(["python3", "src/bench.py", "--clients", "1,2", "--duration", "0.5", "--keys", "200",
                          "--restart-keys", "2000", "--hint-seconds", "1", "--sync-period", "1", "--json"],
                         cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    expected = {f"{op} {level} {c}" for op in ("put", "get") for level in ("ONE", "QUORUM") for c in (1, 2)}
    assert set(report["store"]) == expected and set(report["floor_fanout"]) == expected
    assert set(report["store_periodic_sync"]) == expected and set(report["floor_loop_fanout"]) == expected
    assert set(report["floor_loop_durable_fanout"]) == expected and set(report["store_tls"]) == expected
    for cells in (report["store"], report["store_periodic_sync"], report["store_tls"], report["floor_fanout"],
                  report["floor_loop_fanout"], report["floor_loop_durable_fanout"], report["floor_single_rpc"]):
        for name, cell in cells.items():
            assert cell["ops"] > 0 and cell["errors"] == 0, (name, cell)
            assert 0 < cell["p50_ms"] <= cell["p95_ms"] <= cell["p99_ms"] <= cell["max_ms"], (name, cell)
            assert cell["cpu_us_per_op"] > 0, (name, cell)   # the server processes' CPU, per operation
    restart = report["restart"]
    assert restart["keys"] == 2000 and restart["restart_s"] > 0 and restart["rss_mb"] > 0
    assert isinstance(restart["rss_per_key_bytes"], int)  # at 2,000 keys the difference is noise
    hints = report["hints"]
    assert hints["hints"] > 0 and hints["left"] == 0


def test_the_layer_measurement_reads_the_value_through_every_layer():
    # measure_layers raises LayerError when a layer answers anything but the value written, or when a write is
    # not acknowledged or not applied (an error, or a cell the replica already holds): it would then time the
    # wrong path.
    figures = measure_layers(calls=50, rounds=3)
    assert set(figures) == {"client_get_us", "internode_read_us", "replica_read_us", "store_get_us", "floor_get_us",
                            "store_over_floor", "client_put_us", "internode_write_us", "replica_write_us",
                            "disk_append_us", "store_put_us", "floor_put_us", "handoff_us", "durable_floor_put_us",
                            "put_store_over_floor"}
    assert all(value > 0 for value in figures.values()), figures


def test_a_run_of_chosen_cells_measures_those_alone():
    out = subprocess.run(["python3", "src/bench.py", "--cells", "get ONE,put QUORUM", "--clients", "1", "--duration",
                          "0.3", "--keys", "100", "--rounds", "2", "--no-floor", "--no-tls", "--restart-keys", "0",
                          "--hint-seconds", "0", "--json"],
                         cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(json.loads(out.stdout)["store"]) == {"put QUORUM 1", "get ONE 1"}
    refused = subprocess.run(["python3", "src/bench.py", "--cells", "put ALL"], cwd=CHECKOUT,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "no such cell: put ALL (cells: put QUORUM, get QUORUM" in refused.stderr


def test_the_lean_store_acknowledges_each_put_from_two_of_its_keys_replicas():
    # The lean store is measured as the least a store of this shape does: it must place keys as the store's
    # ring does (owner and the next two) and answer a put once two of them hold it durably.
    peers = [("127.0.0.1", port) for port in free_ports(4)]
    procs = []
    try:
        for _, port in peers:
            procs.append(spawn_floor("lean", port, peers))
        connection = Connection(*peers[0], connect_timeout=5)
        for key, replicas in ((b"\x00a", {0, 1, 2}), (b"\x50a", {1, 2, 3}), (b"\x90a", {2, 3, 0}),
                              (b"\xd0a", {3, 0, 1}), (b"\xffz", {0, 1, 2})):
            result = connection.call("put", (key, b"v", ttypes.ConsistencyLevel.QUORUM), 10)
            assert len(set(result.acknowledged)) == 2 and set(result.acknowledged) <= replicas, (key, result)
            assert result.timestamp > 0
        connection.close()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def test_the_one_client_measurement_reports_every_system_and_the_disk():
    out = subprocess.run(["python3", "src/bench.py", "--one-client", "2", "--keys", "100", "--json"],
                         cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert set(report["puts"]) == {"store", "lean store", "durable loop floor"}
    for name, cell in report["puts"].items():
        assert cell["ops_per_s"] > 0 and 0 < cell["p50_ms"] <= cell["p99_ms"] and len(cell["fifths"]) == 5, name
    assert report["puts"]["durable loop floor"]["ratio"] == 1.0
    assert [rate["processes"] for rate in report["flushes"]] == [1, 2, 3]
    assert all(rate["fdatasyncs_per_s"] > 0 and rate["p50_us"] > 0 for rate in report["flushes"])
