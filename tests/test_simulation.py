"""The membership simulation at a small size, as the suite runs it (python3 src/sim.py runs 100 and 1,000 nodes):
deterministic from its seed; a crash is noticed by every node within a ping's timeout and two rounds; a step
applied by the tool reaches every node, and one that reached a single node spreads by heartbeats within about
a round, with one fetch a node (not one a peer)."""
from kvstore.testing.simulation import measure


def test_a_small_cluster_notices_crashes_and_spreads_an_epoch_in_a_round():
    figures = measure(20, seed=3, service=0.0001)
    assert figures == measure(20, seed=3, service=0.0001)   # the same seed, the same run
    assert figures["heartbeat_msgs_per_s_per_node"] == 4 * 19 * 2   # 4 messages a peer a round, 2 rounds a second
    assert figures["crash_noticed_by_all_s"] <= 1.0 + 2 * 0.5 + 0.01
    assert figures["step_through_tool_s"] < 0.1
    assert figures["step_through_heartbeats_s"] <= 2 * 0.5
    assert 0 < figures["fetches_for_that_step"] <= 19


def test_a_loop_that_cannot_keep_up_shows_in_the_figures():
    """472 messages a second at 8 ms each: the loop is saturated, its timers run late, and a crash takes longer
    to notice and an epoch longer to spread than on a loop with time to spare."""
    slow, fast = measure(60, seed=3, service=0.008), measure(60, seed=3, service=0.0001)
    assert slow["busiest_loop_share"] > 1.0 > 0.05 > fast["busiest_loop_share"]
    assert slow["crash_noticed_by_all_s"] > fast["crash_noticed_by_all_s"] + 0.5
    assert slow["step_through_heartbeats_s"] > 2 * fast["step_through_heartbeats_s"]
