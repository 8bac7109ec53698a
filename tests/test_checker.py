"""The chaos checker finds what it is there to find (so a passing chaos run means something)."""
from kvstore.testing.chaos.checker import check


def w(value, ts, start, end, level="QUORUM", outcome="ok", key="6b", client=0):
    return {"op": "write", "key": key, "value": value, "level": level, "outcome": outcome, "timestamp": ts,
            "start": start, "end": end, "client": client}


def r(value, ts, start, end, level="QUORUM", key="6b"):
    return {"op": "read", "key": key, "level": level, "outcome": "ok", "read": value, "timestamp": ts,
            "start": start, "end": end}


def test_a_clean_history_has_no_findings():
    history = [w("a", 10, 0, 1), r("a", 10, 2, 3), w("b", 20, 4, 5), r("b", 20, 6, 7)]
    assert check(history, {"6b": ("b", 20)}) == {"lost": [], "phantom": [], "stale": [], "out_of_order": []}


def test_an_acknowledged_quorum_write_missing_at_the_end_is_lost():
    history = [w("a", 10, 0, 1), w("b", 20, 2, 3)]
    findings = check(history, {"6b": ("a", 10)})
    assert [f["write"]["value"] for f in findings["lost"]] == ["b"]
    assert check(history, {})["lost"]  # the key gone altogether


def test_a_newer_write_or_a_greater_value_at_the_same_stamp_supersedes():
    history = [w("a", 10, 0, 1), w("b", 10, 0, 1)]
    assert check(history + [w("z", 30, 0, 1, outcome="unknown")], {"6b": ("z", 30)})["lost"] == []
    assert check(history, {"6b": ("b", 10)})["lost"] == []
    assert check(history, {"6b": ("a", 10)})["lost"]  # "b" wins the tie: "a" at the end means "b" was lost


def test_a_quorum_read_older_than_an_acknowledged_write_before_it_is_stale():
    history = [w("a", 10, 0, 1), w("b", 20, 2, 3), r("a", 10, 4, 5), r(None, None, 6, 7)]
    stale = check(history, {"6b": ("b", 20)})["stale"]
    assert [s["read"]["start"] for s in stale] == [4, 6]


def test_overlapping_or_one_level_reads_are_not_stale():
    history = [w("b", 20, 2, 5), r("a", 10, 4, 6), r("a", 10, 7, 8, level="ONE"), w("a", 10, 0, 1)]
    assert check(history, {"6b": ("b", 20)})["stale"] == []


def test_values_nobody_wrote_or_only_refused_writes_carried_are_phantoms():
    history = [w("x", None, 0, 1, outcome="failed"), r("x", 5, 2, 3), r("ghost", 6, 2, 3)]
    phantoms = check(history, {"6b": ("x", 5)})["phantom"]
    assert sorted(p["why"] for p in phantoms) == ["never written", "refused write", "refused write"]


def d(ts, start, end, level="QUORUM", outcome="ok", key="6b"):
    """A delete: a write of no value."""
    return w(None, ts, start, end, level, outcome, key)


def test_a_deleted_value_that_comes_back_is_a_lost_delete():
    history = [w("a", 10, 0, 1), d(20, 2, 3)]
    assert check(history, {"6b": None})["lost"] == []
    assert [f["write"]["value"] for f in check(history, {"6b": ("a", 10)})["lost"]] == [None]
    assert check(history + [w("b", 30, 4, 5)], {"6b": ("b", 30)})["lost"] == []   # a later write wins


def test_nothing_at_the_end_is_explained_only_by_a_delete_that_may_be_newer():
    write = [w("a", 10, 2, 3)]
    assert check(write, {"6b": None})["lost"]                                     # no delete at all
    assert check(write + [d(5, 0, 1)], {"6b": None})["lost"]                      # an older delete
    assert check(write + [d(20, 4, 5)], {"6b": None})["lost"] == []              # a newer one
    assert check(write + [d(None, 2.5, 9, outcome="unknown")], {"6b": None})["lost"] == []
    assert check(write + [d(None, 0, 1, outcome="unknown")], {"6b": None})["lost"]   # ended before it began
    assert check(write + [d(None, 4, 5, outcome="failed")], {"6b": None})["lost"]    # never applied


def test_reads_after_a_delete_must_not_see_the_deleted_value():
    history = [w("a", 10, 0, 1), d(20, 2, 3), r(None, None, 4, 5), r("a", 10, 6, 7)]
    assert [s["read"]["start"] for s in check(history, {"6b": None})["stale"]] == [6]
    # Nothing, after an acknowledged write, is stale unless a delete may have come in between.
    history = [w("a", 10, 0, 1), r(None, None, 2, 2.4), d(None, 2.5, 9, outcome="unknown"), r(None, None, 4, 5)]
    assert [s["read"]["start"] for s in check(history, {"6b": None})["stale"]] == [2]


def test_a_sessions_write_stamped_at_or_below_its_earlier_one_is_out_of_order():
    # Client 1 writes "a" then, once that is acknowledged, "b" of another key through a slower clock.
    history = [w("a", 20, 0, 1, client=1), w("b", 15, 2, 3, key="6c", level="ONE", client=1),
               w("c", 30, 4, 5, client=1),
               w("x", 10, 6, 7, client=2), w("y", 99, 6.5, 7, outcome="unknown", client=2),   # no stamp known
               w("z", 11, 8, 9, client=2)]
    found = check(history, {"6b": ("c", 30), "6c": ("b", 15)})["out_of_order"]
    assert [(f["write"]["value"], f["after"]["value"]) for f in found] == [("b", "a")]


def test_the_checker_handles_a_long_history():
    # 200,000 operations, as a long run makes: a checker that pairs every read with every write
    # would not finish (the first version did not); this one checks them in a blink.
    history = []
    for n in range(100_000):
        history.append(w("v%d" % n, n, n, n + 0.5, key="k%d" % (n % 8)))
        history.append(r("v%d" % n, n, n + 0.6, n + 0.7, key="k%d" % (n % 8)))
    findings = check(history, {"k%d" % k: ("v%d" % (99_992 + k), 99_992 + k) for k in range(8)})
    assert findings == {"lost": [], "phantom": [], "stale": [], "out_of_order": []}
    history.append(r("v5", 5, 10**6, 10**6 + 1, key="k5"))  # long after v99997 on k5
    assert len(check(history, {})["stale"]) == 1
