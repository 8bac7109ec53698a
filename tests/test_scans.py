"""How a scan merges the pages of one token range's replicas (pure; real-node scans are in test_features)."""
from kvstore.core.cell import Cell, tombstone
from kvstore.cluster.scan_pages import ReplicaPage, merge_pages


def pages(*answers):
    return [(node_id, ReplicaPage(cells, *rest)) for node_id, cells, *rest in answers]


def test_the_merge_takes_the_newest_cell_per_key_and_names_the_stale_replicas():
    answers = pages((1, [(b"a", Cell(b"old", 1)), (b"b", Cell(b"x", 5))]),
                    (2, [(b"a", Cell(b"new", 2)), (b"c", tombstone(3))]))
    merged, stale, covered = merge_pages(answers, limit=10, high=b"z")
    assert merged == [(b"a", Cell(b"new", 2)), (b"b", Cell(b"x", 5)), (b"c", tombstone(3))]
    assert sorted(stale) == [(1, b"a", Cell(b"new", 2)), (1, b"c", tombstone(3)), (2, b"b", Cell(b"x", 5))]
    assert covered == b"z"


def test_a_full_page_bounds_the_merge_at_its_last_key():
    # Replica 1 stopped at b"b" (a full page): it might hold b"c", so b"c" from replica 2 must wait.
    answers = pages((1, [(b"a", Cell(b"1", 1)), (b"b", Cell(b"1", 1))]),
                    (2, [(b"a", Cell(b"1", 1)), (b"c", Cell(b"2", 1))]))
    merged, stale, covered = merge_pages(answers, limit=2, high=None)
    assert covered == b"b\x00"
    assert [k for k, _ in merged] == [b"a", b"b"]
    assert stale == [(2, b"b", Cell(b"1", 1))]


def test_an_empty_range_is_complete_up_to_its_end():
    assert merge_pages(pages((1, []), (2, [])), limit=5, high=None) == ([], [], None)


def test_a_page_cut_by_bytes_bounds_the_merge_like_a_full_one():
    answers = pages((1, [(b"a", Cell(b"big", 1))], True), (2, [(b"a", Cell(b"big", 1)), (b"b", Cell(b"2", 1))]))
    merged, _, covered = merge_pages(answers, limit=64, high=None)
    assert covered == b"a\x00" and [k for k, _ in merged] == [b"a"]   # b"b" waits for the next round
    empty_cut = pages((1, [], True), (2, [(b"m", Cell(b"1", 1))]))
    merged, _, covered = merge_pages(empty_cut, limit=64, high=b"z", low=b"k")
    assert covered == b"k" and merged == []                          # nothing known past low: ask again


def test_a_page_stops_at_its_count_or_its_bytes_and_says_where_the_next_begins():
    from kvstore.core.config import ENTRY_OVERHEAD
    from kvstore.cluster.scan_pages import Page
    by_count = Page(limit=2, max_bytes=10**9)
    assert by_count.add(b"a", Cell(b"1", 1)) is None
    assert by_count.add(b"b", Cell(b"2", 1)) == b"b\x00"          # full: the next page starts after b
    by_bytes = Page(limit=100, max_bytes=2 * (1 + 10 + ENTRY_OVERHEAD))
    assert [by_bytes.add(k, Cell(b"x" * 10, 1)) for k in (b"a", b"b")] == [None, None]
    assert by_bytes.add(b"c", Cell(b"x" * 10, 1)) == b"c"         # did not fit: the next page starts at c
    assert [k for k, _ in by_bytes.items] == [b"a", b"b"]
    alone = Page(limit=100, max_bytes=1)
    assert alone.add(b"big", Cell(b"x" * 1000, 1)) is None and len(alone.items) == 1   # always one key
