"""`sum`: a keyed reducer adding up decimal integers per key.

Each record's value is a signed 64-bit integer in decimal text; surrounding
whitespace is ignored. The accumulator is the key's running total as decimal
text. A value that is not an integer, or that would make the total overflow,
is rejected with a reason naming the value, and the total stays as it was.

    [[operators]]
    reducer = "sum.wasm"
"""

import re

import sluice_sdk as sluice

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
# Rust's `str::trim`: the Unicode White_Space characters (not \x1c-\x1f,
# which Python's `str.strip()` would also remove).
_WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")  # what Rust's i64::from_str accepts


def parse(data: bytes):
    """Trimmed decimal text as a signed 64-bit integer, or None."""
    try:
        text = data.decode("utf-8").strip(_WHITE_SPACE)
    except UnicodeDecodeError:
        return None
    if not _INTEGER.match(text):
        return None
    n = int(text)
    return n if I64_MIN <= n <= I64_MAX else None


def quoted(data: bytes) -> str:
    """A value quoted for a rejection reason, shortened when long."""
    text = sluice.debug_str(sluice.lossy(data[:40]))
    return text + "..." if len(data) > 40 else text


class Sum(sluice.Reducer):
    def __init__(self, config: sluice.Config):
        config.allow_only()

    def reduce(self, group: sluice.Group) -> bytes:
        if group.accumulator is None:
            total = 0
        else:
            total = parse(group.accumulator)
            if total is None:
                raise sluice.Failed(f"the accumulator of key {quoted(group.key)} is not an "
                                    f"integer: {quoted(group.accumulator)}")
        for i, value in enumerate(group.values):
            x = parse(value)
            if x is None:
                group.reject(i, f"value {quoted(value)} is not a decimal integer "
                                "(accepted: -9223372036854775808 to 9223372036854775807)")
            elif I64_MIN <= total + x <= I64_MAX:
                total += x
            else:
                group.reject(i, f"value {quoted(value)} would overflow the total {total} of key "
                                f"{quoted(group.key)} (a signed 64-bit integer)")
        return str(total).encode()


Reducer = sluice.export_reducer(Sum)
