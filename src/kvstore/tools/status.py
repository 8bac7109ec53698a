"""./server.sh status: each node's process and state, its view of the others' clocks, and the ranges each holds."""
import shlex

import psutil

from kvstore.net.blocking import probe
from kvstore.tools import heal, processes

CLOCK_NOTE_US = 100_000   # a clock this far from another's is named in status (the bound is --max-clock-offset)
EXIT_OK = 0


def cmd_status(cluster, args, ranges=True):
    """Each node's state; with ranges, each node's ranges and their repairs too (not after a start: none yet)."""
    print(f"{'node':<6}{'address':<22}{'state':<10}{'pid':<9}data")
    notes, tls, seen = [], cluster.access["tls"], None
    for node in cluster.nodes():
        process = processes.find_node(cluster.node_dir(node.node_id))
        state, why = node_state(node, process, tls)
        if state == "up" and seen is None:
            seen = (node.node_id, why)   # its view of the ring: who is up, and each clock's offset from its own
        if state == "refusing":
            notes.append(f"node {node.node_id} is up but refusing connections: {why}")
        pid = str(process.pid) if process else "-"
        print(f"{node.node_id:<6}{node.address:<22}{state:<10}{pid:<9}{cluster.node_dir(node.node_id)}")
    for info in seen[1] if seen else ():
        if abs(info.clock_offset or 0) >= CLOCK_NOTE_US:
            notes.append(f"node {info.node_id}'s clock is {info.clock_offset / 1e6:+.3f} s from node {seen[0]}'s")
    for note in notes:
        print(note)
    if ranges:
        heal.ranges_report(cluster)
    options = cluster.node_options()
    if options:
        print(f"node options ({cluster.options_file}): {shlex.join(options)}")
    return EXIT_OK


def node_state(node, process, tls=None):
    """(state, why): down (no process), paused (SIGSTOP), up, refusing (up, at its connection limit),
    or starting (its process runs but does not answer yet: replaying its log, say)."""
    if process is None:
        return "down", ""
    try:
        if process.status() == psutil.STATUS_STOPPED:
            return "paused", ""
    except psutil.NoSuchProcess:
        return "down", ""
    state, why = probe(node.host, node.port, 0.5, tls)
    return (state if state in ("up", "refusing") else "starting"), why
