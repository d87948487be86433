"""`split-words`: a flatMap from lines to words.

Splits each value into words and emits one record per non-empty word, keyed
by the word (so a following `count` groups by word). Output records have no
headers. Settings:

- `split_on` (`whitespace` or `non-alphanumeric`, default `whitespace`): what
  separates words. `whitespace` is ASCII space, \\t, \\n, \\x0c and \\r (not
  \\x0b). `non-alphanumeric` also drops punctuation: any byte that is not an
  ASCII letter or digit, or part of a non-ASCII character, separates words.
- `lowercase` (`true`/`false`, default `false`): lower-case ASCII letters.
- `keyed` (`true`/`false`, default `true`): set the word as the key.

The work is done by C code on bytes: one `lower()` of the whole values
buffer, then one `split()` or regular-expression scan of all the values
(per record when the batch's timestamps differ).
"""

import re
from itertools import accumulate, repeat

import sluice_sdk as sluice

# Rust's `u8::is_ascii_whitespace`: space, \t, \n, \x0c, \r. Python's
# `bytes.split()` also splits on \x0b, so it is used only when a batch has none.
_WORDS = re.compile(rb"[^ \t\n\x0c\r]+").findall
_ALNUM_WORDS = re.compile(rb"[0-9A-Za-z\x80-\xff]+").findall


class SplitWords(sluice.Operator):
    def __init__(self, config: sluice.Config):
        config.allow_only("split_on", "lowercase", "keyed")
        split_on = config.get("split_on", "whitespace")
        if split_on not in ("whitespace", "non-alphanumeric"):
            raise sluice.BadConfig(
                f"setting `split_on` = {sluice.debug_str(split_on)} is not valid "
                "(accepted: whitespace, non-alphanumeric)")
        self.whitespace = split_on == "whitespace"
        self.lowercase = config.bool("lowercase", False)
        self.keyed = config.bool("keyed", True)

    def process_batch(self, batch: sluice.Batch, out: sluice.Output):
        values = batch.values.lower() if self.lowercase else batch.values
        if not self.whitespace:
            split = _ALNUM_WORDS
        elif b"\x0b" in values:
            split = _WORDS
        else:
            split = bytes.split
        ends, stamps = batch.value_ends, batch.timestamps
        if stamps and stamps.count(stamps[0]) == len(stamps):
            # One timestamp for the whole batch (the common case): split all
            # values at once, with a space (a separator) between records.
            words = split(b" ".join(map(values.__getitem__, map(slice, [0, *ends[:-1]], ends))))
            timestamps = [stamps[0]] * len(words)
        else:
            words, timestamps = [], []
            start = 0
            for end, ts in zip(ends, stamps):
                found = split(values[start:end])
                start = end
                if found:
                    words += found
                    timestamps += repeat(ts, len(found))
        data = b"".join(words)
        word_ends = list(accumulate(map(len, words)))
        if self.keyed:  # the key of each word is the word: the same buffers
            return sluice.Batch(data, word_ends, b"\x01" * len(words), data, word_ends, timestamps)
        return sluice.Batch(b"", [0] * len(words), b"", data, word_ends, timestamps)


Transformer = sluice.export(SplitWords)
