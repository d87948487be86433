"""Text helpers that reproduce the Rust SDK's messages exactly."""

import unicodedata

_SIMPLE = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"'}

# Characters with the Grapheme_Extend property that are not in categories
# Mn/Me (Other_Grapheme_Extend), plus U+200C.
_OTHER_EXTEND = frozenset(
    [0x09BE, 0x09D7, 0x0B3E, 0x0B57, 0x0BBE, 0x0BD7, 0x0CC2, 0x0CD5, 0x0CD6,
     0x0D3E, 0x0D57, 0x0DCF, 0x0DDF, 0x1B35, 0x200C, 0x302E, 0x302F, 0xFF9E,
     0xFF9F, 0x1133E, 0x11357, 0x114B0, 0x114BD, 0x115AF, 0x11930, 0x1D165,
     0x1D16E, 0x1D16F, 0x1D170, 0x1D171, 0x1D172]
    + list(range(0xE0020, 0xE0080))
)


def _escape(c: str) -> str:
    simple = _SIMPLE.get(c)
    if simple is not None:
        return simple
    if " " <= c <= "~":
        return c
    if (unicodedata.category(c) in ("Mn", "Me") or ord(c) in _OTHER_EXTEND
            or not c.isprintable()):
        return "\\u{%x}" % ord(c)
    return c


def debug_str(text: str) -> str:
    """`text` quoted the way Rust's `{:?}` formats a string: in double
    quotes, with `"`, `\\` and control characters escaped."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return '"' + "".join(map(_escape, text)) + '"'


def lossy(data: bytes) -> str:
    """Bytes as text, invalid UTF-8 replaced by U+FFFD (Rust's
    `String::from_utf8_lossy`)."""
    return bytes(data).decode("utf-8", "replace")
