"""The one notation for bytes as text: what the tools print reads back as the same bytes."""
import random

import pytest

from kvstore.core.notation import NotationError, parse_word, quote, show, split_words


def test_printable_text_is_shown_as_it_is_and_everything_else_in_escaped_quotes():
    assert show(b"apple") == "apple"
    assert show("naïve".encode()) == "naïve"
    assert show(b"two words") == "two words"
    assert show(b"\xff\xfe") == r'"\xff\xfe"'
    assert show(b"tab\there\n") == r'"tab\there\n"'
    assert show(b"") == '""'
    assert show(b'"quoted"') == r'"\"quoted\""'      # a leading quote would read as the notation
    assert show(b" padded") == '" padded"'             # edge white space would be invisible
    assert show(b"a\\b") == "a\\b"


def test_text_that_looks_like_hex_and_the_bytes_it_spells_are_told_apart():
    assert show(b"0xfffe00") == "0xfffe00"
    assert show(b"\xff\xfe\x00") == r'"\xff\xfe\x00"'
    assert split_words(r'get 0xfffe00 "\xff\xfe\x00"') == [b"get", b"0xfffe00", b"\xff\xfe\x00"]


def test_every_byte_string_shown_reads_back_as_the_same_bytes():
    rng = random.Random(5)
    samples = [bytes([b]) for b in range(256)] + [b"", b"a b", b"'", b'"', b"\\", b"\\x41"]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))) for _ in range(2000)]
    for data in samples:
        shown = show(data)
        typed = quote(data) if " " in shown and not shown.startswith('"') else shown
        assert split_words(typed) == [data], (data, shown)
        assert parse_word(shown) == data, (data, shown)


def test_a_console_line_splits_into_words_as_redis_cli_reads_them():
    assert split_words(b'put \xff\xfe v') == [b"put", b"\xff\xfe", b"v"]   # raw bytes as they were typed
    assert split_words(r'''put "a b" 'it\'s' "say \"hi\"" plain''') == [b"put", b"a b", b"it's", b'say "hi"',
                                                                         b"plain"]
    for bad in ('put "\\x4" x', 'put k "\\xZZ"', 'put k "\\x"'):   # not two hex digits: refused, not taken as x
        with pytest.raises(NotationError, match=r"a bad escape at byte \d+: \\x needs two hex digits"):
            split_words(bad)
    assert split_words("   ") == []


@pytest.mark.parametrize("line, cause", [('put "open', "double quote is not closed"),
                                         ("put 'open", "single quote is not closed"),
                                         ('put "a"b', "closing quote must be followed by a space")])
def test_a_line_that_cannot_be_read_says_why(line, cause):
    with pytest.raises(NotationError, match=cause):
        split_words(line)


def test_a_single_argument_is_taken_as_it_is_unless_it_is_quoted():
    assert parse_word("my key") == b"my key"
    assert parse_word(b"\xff") == b"\xff"
    assert parse_word(r'"\xff\x00"') == b"\xff\x00"
    with pytest.raises(NotationError):
        parse_word('"a" b')
