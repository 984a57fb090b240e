"""Which links a benchmark's requests visit: files of slugs for redirect.lua.

A uniform mix writes each slug once (redirect.lua picks one at random per request);
a skewed mix writes a long sequence drawn from a Zipf law, which the script walks
in order from a random start, so a few links get most of the requests, as in real
traffic."""

import bisect
import itertools
import random
from pathlib import Path


def zipf_indices(count: int, draws: int, *, s: float, rng: random.Random) -> list[int]:
    """`draws` indices into `count` items with P(rank k) ∝ 1/k^s; which item has
    which rank is shuffled, so the hot links are not the oldest ones."""
    cumulative = list(itertools.accumulate(1 / k**s for k in range(1, count + 1)))
    total = cumulative[-1]
    ranks = list(range(count))
    rng.shuffle(ranks)
    return [ranks[min(bisect.bisect_left(cumulative, rng.random() * total), count - 1)] for _ in range(draws)]


def write_slugs(path: Path, slugs: list[str]) -> Path:
    path.write_text("\n".join(slugs) + "\n")
    return path


def write_zipf_slugs(path: Path, slugs: list[str], *, draws: int, s: float = 1.1, seed: int = 15) -> Path:
    """A sequence of `draws` slugs drawn by Zipf's law (redirect.lua's SEQUENTIAL mode)."""
    indices = zipf_indices(len(slugs), draws, s=s, rng=random.Random(seed))
    return write_slugs(path, [slugs[index] for index in indices])
