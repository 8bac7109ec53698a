r"""One way to write keys and values as text and to read them back, for every tool and message.

Keys and values are bytes. What the tools print reads back as the same bytes (text shown as it is
is typed as it is, in quotes where it holds spaces):

- Bytes that are printable UTF-8 are shown as they are: `apple`, `two words`, `naïve`.
- Everything else is shown in double quotes with redis-cli's escapes: `"\xff\xfe"`, `"line\nbreak"`,
  `"say \"hi\""`. So are the ambiguous cases: the empty string (`""`), text that begins with a
  quote (`"\"q"`, `"'q"`), and text that begins or ends with white space (`" padded"`).

Typed (the console's words, the inspector's --key):
- a word in double quotes is read with the same escapes: `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a`, `\\`,
  `\"` (any other `\c` is `c`); `\x` without two hex digits is refused;
- a word in single quotes is taken as it is, but for `\'`;
- any other word runs to the next white space and is taken as it is.
A closing quote must end its word, as in redis-cli. Pure: no I/O.
"""

_ESCAPES_OUT = {0x5C: "\\\\", 0x22: '\\"', 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x07: "\\a", 0x08: "\\b"}
_ESCAPES_IN = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}
_SPACE = b" \t\r\n\v\f"
_HEX = b"0123456789abcdefABCDEF"


class NotationError(ValueError):
    """A line or word that cannot be read (an unclosed quote, a bad escape); the message says where."""


def show(data, limit=None):
    """data as the tools print it (see the module doc); cut to `limit` characters with an ellipsis."""
    text = _plain(data)
    if text is None:
        text = quote(data)
    if limit and len(text) > limit:
        text = text[:limit - 1] + "…"
    return text


def _plain(data):
    """data as text when it can be shown as it is, else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or not text.isprintable() or text[0] in "\"'" or text != text.strip():
        return None
    return text


def quote(data):
    """data in double quotes with every byte that is not printable ASCII escaped."""
    out = []
    for byte in data:
        if byte in _ESCAPES_OUT:
            out.append(_ESCAPES_OUT[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def split_words(line):
    """The words of a console line (bytes or str) as bytes; NotationError when a quote is left open."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")  # what the terminal sent, byte for byte
    words, i = [], 0
    while True:
        while i < len(line) and line[i] in _SPACE:
            i += 1
        if i == len(line):
            return words
        word, i = _read_word(line, i)
        words.append(word)


def parse_word(text):
    """One argument (bytes or str, e.g. from argv) as bytes: a quoted word is read as the console reads
    it; anything else is taken as it is, spaces included."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    if text[:1] not in (b'"', b"'"):
        return text
    word, end = _read_word(text, 0)
    if end != len(text):
        raise NotationError(f"unexpected text after the closing quote: {show(text[end:])}")
    return word


def _read_word(line, i):
    """(the word starting at line[i], the index after it)."""
    if line[i:i + 1] == b'"':
        return _read_double_quoted(line, i + 1)
    if line[i:i + 1] == b"'":
        return _read_single_quoted(line, i + 1)
    start = i
    while i < len(line) and line[i] not in _SPACE:
        i += 1
    return line[start:i], i


def _read_double_quoted(line, i):
    out = bytearray()
    while i < len(line):
        byte = line[i]
        if byte == 0x22:
            return bytes(out), _after_quote(line, i + 1)
        if byte == 0x5C and i + 1 < len(line):
            escaped = line[i + 1]
            if escaped == ord("x"):
                digits = line[i + 2:i + 4]
                if len(digits) < 2 or digits[0] not in _HEX or digits[1] not in _HEX:
                    raise NotationError(f"a bad escape at byte {i}: \\x needs two hex digits (\\x00 to "
                                        f"\\xff), not {show(line[i:i + 4])}")
                out.append(int(digits, 16))
                i += 4
                continue
            out += _ESCAPES_IN.get(escaped, bytes([escaped]))
            i += 2
            continue
        out.append(byte)
        i += 1
    raise NotationError('a double quote is not closed (type \\" for a quote inside one)')


def _read_single_quoted(line, i):
    out = bytearray()
    while i < len(line):
        if line[i:i + 2] == b"\\'":
            out.append(0x27)
            i += 2
        elif line[i] == 0x27:
            return bytes(out), _after_quote(line, i + 1)
        else:
            out.append(line[i])
            i += 1
    raise NotationError("a single quote is not closed (type \\' for a quote inside one)")


def _after_quote(line, i):
    if i < len(line) and line[i] not in _SPACE:
        raise NotationError("a closing quote must be followed by a space (or end the line)")
    return i
