"""Random streams and record ids that do not depend on how the population is chunked.

The population is cut into fixed blocks of ``RNG_BLOCK`` consecutive persons. Every random
draw about a person (their identity, utilisation, referrals, records, faults) comes from the
numpy Generator of that person's block, seeded by (seed, block). A chunk is a run of whole
blocks: the generator draws for a whole chunk at once, vectorised, but each draw is split by
block and taken from the block's own Generator, and every table of a chunk is kept in block
order (rows of block 0, then block 1, ...; within a block in a fixed order). So each block
sees the same sequence of draws, and each file the same rows in the same order, whatever the
chunk size.

Record ids are a keyed permutation (a small Feistel cipher) of the record's position in its
table, so they are unique without a global set, look unordered, and carry no information
about the person or the block. A chunk is built with ``ChunkRecordIds`` (positions within the
chunk, as integers), so chunks can be built in parallel; the writer turns them into the ids
of their place in the table (``label_chunk_ids``) as it takes the chunks in order.
"""
from __future__ import annotations

import numpy as np

RNG_BLOCK = 1_000  # persons per random-stream block; a chunk is a whole number of blocks


class Draws:
    """A numpy-Generator-like view that draws ``sum(seg)`` values, ``seg[i]`` of them from
    block i's Generator. Positional array arguments of that length (per-value rates,
    probabilities, bounds) are split the same way; ``choice``'s population never is."""

    def __init__(self, gens: list[np.random.Generator], seg: np.ndarray):
        seg = np.asarray(seg, dtype=np.int64)
        if len(seg) != len(gens):
            raise ValueError(f"{len(seg)} block counts for {len(gens)} blocks")
        self.gens = gens
        self.bounds = np.r_[0, np.cumsum(seg)]
        self.total = int(self.bounds[-1])

    def _go(self, method: str, args: tuple, size, kw: dict, split_first: bool = True) -> np.ndarray:
        if size is not None and int(size) != self.total:
            raise ValueError(f"asked for {size} values from a view of {self.total}")
        parts = []
        for g, lo, hi in zip(self.gens, self.bounds[:-1], self.bounds[1:]):
            if hi == lo:
                continue
            a = [x[lo:hi] if (split_first or i > 0) and isinstance(x, np.ndarray) and x.ndim == 1
                 and len(x) == self.total else x for i, x in enumerate(args)]
            parts.append(getattr(g, method)(*a, size=int(hi - lo), **kw))
        if not parts:  # no values: a size-0 draw (it leaves a Generator's state unchanged)
            a = [x[:0] if isinstance(x, np.ndarray) and x.ndim == 1 and len(x) == 0 else x for x in args]
            return getattr(self.gens[0] if self.gens else np.random.default_rng(0), method)(*a, size=0, **kw)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def random(self, size=None):
        return self._go("random", (), size, {})

    def integers(self, low, high, size=None):
        return self._go("integers", (low, high), size, {})

    def choice(self, a, size=None, p=None):
        return self._go("choice", (a,), size, {"p": p}, split_first=False)

    def poisson(self, lam, size=None):
        return self._go("poisson", (lam,), size, {})

    def normal(self, loc, scale, size=None):
        return self._go("normal", (loc, scale), size, {})

    def geometric(self, p, size=None):
        return self._go("geometric", (p,), size, {})

    def gamma(self, shape, scale, size=None):
        return self._go("gamma", (shape, scale), size, {})

    def beta(self, a, b, size=None):
        return self._go("beta", (a, b), size, {})

    def binomial(self, n, p, size=None):
        return self._go("binomial", (n, p), size, {})


class BlockRNG:
    """The Generators of the blocks of one chunk (persons ``first`` to ``first + n - 1``)."""

    def __init__(self, seed: int, first: int, n: int, stream: int = 0):
        if first % RNG_BLOCK:
            raise ValueError(f"a chunk starts on a block boundary (a multiple of {RNG_BLOCK}), not at {first}")
        self.seed, self.first, self.n = seed, first, n
        b0, b1 = first // RNG_BLOCK, -(-(first + n) // RNG_BLOCK)
        # stream 0 is the population's; another stream is independent of it, so what it draws
        # (e.g. the negative-control outcomes) leaves every draw of stream 0 as it was
        self.gens = [np.random.default_rng([seed, 0xB10C, b] + ([stream] if stream else []))
                     for b in range(b0, b1)]
        self.person_block = np.arange(n) // RNG_BLOCK  # block (within the chunk) of each local person

    def substream(self, stream: int) -> "BlockRNG":
        """The same blocks' independent stream number ``stream`` (> 0)."""
        if stream < 1:
            raise ValueError("substreams are numbered from 1 (0 is the population's own)")
        return BlockRNG(self.seed, self.first, self.n, stream)

    def block_of(self, person: np.ndarray) -> np.ndarray:
        """Block (within the chunk) of local person indices."""
        return np.asarray(person, dtype=np.int64) // RNG_BLOCK

    def seg(self, person: np.ndarray) -> np.ndarray:
        """Values per block for rows of the given local persons, which must be in block order."""
        b = self.block_of(person)
        if len(b) > 1 and (np.diff(b) < 0).any():
            raise ValueError("rows must be in block order before drawing for them")
        return np.bincount(b, minlength=len(self.gens))

    def for_rows(self, person: np.ndarray) -> Draws:
        """Draws, one value per row, for rows of local persons in block order."""
        return Draws(self.gens, self.seg(person))

    def per_person(self, times: int = 1) -> Draws:
        """Draws for every person of the chunk (``times`` values each, person-major)."""
        return Draws(self.gens, np.bincount(self.person_block, minlength=len(self.gens)) * times)

    def order(self, person: np.ndarray) -> np.ndarray:
        """Stable permutation putting rows of local persons into block order (keeping the
        order of rows within a block)."""
        return np.argsort(self.block_of(person), kind="stable")


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """A keyed 64-bit mixer (splitmix64 finaliser) for the Feistel rounds."""
    with np.errstate(over="ignore"):
        z = (x ^ key) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class RecordIds:
    """Unique, unordered record ids per prefix: ``prefix`` + zero-padded Feistel image of the
    record's position in its table (positions handed out in row order across chunks)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.next: dict[str, int] = {}

    def take(self, prefix: str, n: int, width: int = 10) -> np.ndarray:
        start = self.next.get(prefix, 0)
        self.next[prefix] = start + n
        modulus = 10 ** (width - 1)
        if start + n > modulus:
            raise ValueError(f"more than {modulus:,} {prefix} records")
        nums = self._permute(np.arange(start, start + n, dtype=np.uint64), prefix, modulus)
        digits = np.char.zfill(nums.astype(str), width - 1)
        return np.char.add(prefix, digits).astype(object)

    def _permute(self, x: np.ndarray, prefix: str, modulus: int) -> np.ndarray:
        half = (int(modulus - 1).bit_length() + 1) // 2
        mask = np.uint64((1 << half) - 1)
        ss = np.random.SeedSequence([self.seed, 0x1D5, *prefix.encode()])
        keys = [np.uint64(k) for k in ss.generate_state(4, dtype=np.uint64)]
        m = np.uint64(modulus)

        def encrypt(v):
            left, right = v >> np.uint64(half), v & mask
            for k in keys:
                left, right = right, left ^ (_mix(right, k) & mask)
            return (left << np.uint64(half)) | right

        y = encrypt(x)
        # cycle-walk: re-encrypt the few values outside [0, modulus) until they fall inside
        out = y >= m
        while out.any():
            y[out] = encrypt(y[out])
            out = y >= m
        return y.astype(np.int64)


class ChunkRecordIds:
    """Record ids of one chunk before its place in the tables is known: ``take`` hands out
    positions within the chunk (0, 1, ... per prefix, as int64), and ``taken`` says how many
    of each prefix, at which width, for ``label_chunk_ids``."""

    def __init__(self):
        self.taken: dict[str, tuple[int, int]] = {}  # prefix -> (count, width)

    def take(self, prefix: str, n: int, width: int = 10) -> np.ndarray:
        start, known = self.taken.get(prefix, (0, width))
        if known != width:
            raise ValueError(f"record ids {prefix!r} taken at widths {known} and {width}")
        self.taken[prefix] = (start + n, width)
        return np.arange(start, start + n, dtype=np.int64)


def label_chunk_ids(ids: RecordIds, chunk_ids: ChunkRecordIds) -> dict[str, np.ndarray]:
    """The chunk's ids in table order: for each prefix, the ids of its positions 0, 1, ...
    (the next ``count`` ids of the whole table), so ``labels[prefix][position]`` is the id."""
    return {prefix: ids.take(prefix, count, width) for prefix, (count, width) in sorted(chunk_ids.taken.items())}
