"""Writes the word-count benchmark corpus: a 10,000-word vocabulary,
10 words a line, 2,000,000 lines (about 140 MB), the same on every run."""

import random
import sys


def vocabulary(n, rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))))
    return sorted(words)


def main():
    path = sys.argv[1]
    lines = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
    rng = random.Random(20261125)
    vocab = vocabulary(10_000, rng)
    with open(path, "w") as out:
        chunk = []
        for i in range(lines):
            chunk.append(" ".join(rng.choices(vocab, k=10)))
            if len(chunk) == 10_000:
                out.write("\n".join(chunk) + "\n")
                chunk = []
        if chunk:
            out.write("\n".join(chunk) + "\n")


if __name__ == "__main__":
    main()
