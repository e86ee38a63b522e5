"""Exact and near-duplicate detection: normalised-text hashing, and MinHash + LSH (``datasketch``).

- :func:`exact_duplicates` -- groups of records whose :func:`~utils.curate.text.normalize_text` is
  identical (case, full-width forms and whitespace do not count).
- :func:`near_duplicates` -- MinHash signatures of each text's character shingles
  (:func:`~utils.curate.text.shingles`, so Chinese and English alike), indexed in a
  ``datasketch.MinHashLSH`` tuned towards recall (:data:`LSH_WEIGHTS`); every candidate pair the index returns is verified with the MinHash
  estimate of its Jaccard similarity, and the pairs at or above ``threshold`` are joined into clusters
  (connected components). The first record of each cluster is kept, the others are removed.
- :func:`jaccard` -- the exact Jaccard similarity of two shingle sets, to measure what MinHash misses
  (recall) and what it wrongly joins (precision).

How it follows datasketch's advice for speed (measured in ``benchmarks/curate_bench.py``):

- one MinHash is initialised once and reused (``MinHash.generator``, the streaming form of
  ``MinHash.bulk``), so the permutations are not generated again for every record;
- each record's shingles go in with one ``update_batch`` call, not one ``update`` per shingle;
- shingles are hashed for a whole batch of texts at once with numpy (a polynomial rolling hash of the
  code points folded to 32 bits, :func:`shingle_hashes`); datasketch's ``hashfunc`` then only passes
  these integers on (its "affine32" scheme mixes every input hash with the MurmurHash3 finaliser first,
  so the 32-bit values are well spread);
- signatures are kept in one ``uint32`` numpy matrix (leaner than a ``LeanMinHash`` per record), which
  also verifies all candidates of a record in one vectorised comparison;
- the LSH index is queried before each record is inserted, so each pair is seen once.

Example:
    >>> texts = ["今天天气很好，我们去公园散步吧。", "今天天气很好，我们去公园散步吧！", "Completely different text here."]
    >>> exact_duplicates(["Hello  World", "hello world", "other"])
    [[0, 1]]
    >>> result = near_duplicates(texts, threshold=0.7)
    >>> result.clusters, result.keep, result.removed
    ([[0, 1]], [0, 2], [1])
    >>> round(jaccard(texts[0], texts[1]), 3)
    0.846
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np

from utils.curate.text import normalize_text, shingles

__all__ = ["NearDupResult", "LSH_WEIGHTS", "exact_duplicates", "near_duplicates", "jaccard", "shingle_hashes",
           "minhash_lsh"]

_P = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the rolling hash (2^64 / golden ratio)
_LOW32 = np.uint64(0xFFFFFFFF)
_BATCH = 256  # texts hashed per numpy pass (speed is flat from 64 to 2,048; memory is not)


def exact_duplicates(texts: Iterable[str]) -> list[list[int]]:
    """Groups of indices whose normalised text is identical (only groups of two or more), in order of
    their first index; the first index of each group is the one to keep.

    >>> exact_duplicates(["a b", "A  B", "c", "a b"])
    [[0, 1, 3]]
    """
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(normalize_text(text), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def jaccard(a: str | set, b: str | set, ngram: int = 5) -> float:
    """Exact Jaccard similarity ``|A ∩ B| / |A ∪ B|`` of two shingle sets (texts are shingled first with
    :func:`~utils.curate.text.shingles`); 1.0 for two empty sets.

    >>> jaccard({"a", "b", "c"}, {"b", "c", "d"})
    0.5
    """
    sa = shingles(a, ngram) if isinstance(a, str) else set(a)
    sb = shingles(b, ngram) if isinstance(b, str) else set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def shingle_hashes(texts: Iterable[str], ngram: int = 5, batch_size: int = _BATCH) -> Iterator[list[int]]:
    """For each text, the 32-bit hashes of its distinct shingles (one per element of
    :func:`~utils.curate.text.shingles` ``(text, ngram)``, sorted), computed for a batch of texts at once.

    The hash of a shingle ``c_1..c_n`` (Unicode code points) is ``sum c_j * P^(n-j) mod 2^64`` folded to
    32 bits (high xor low half). Equal shingles always get equal hashes; two different shingles of one
    text collide with probability about 2^-32.

    >>> [len(h) for h in shingle_hashes(["hello world", "hi", ""])]
    [7, 1, 0]
    """
    if ngram < 1:
        raise ValueError(f"ngram must be at least 1, got {ngram}")
    chunk: list[str] = []
    for text in texts:
        chunk.append(normalize_text(text))
        if len(chunk) >= batch_size:
            yield from _hash_chunk(chunk, ngram)
            chunk = []
    if chunk:
        yield from _hash_chunk(chunk, ngram)


def _rolling(cp: np.ndarray, n: int, count: int) -> np.ndarray:
    h = cp[:count].copy()
    for j in range(1, n):
        h *= _P
        h += cp[j:j + count]
    return h


def _fold(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(32)) ^ (h & _LOW32)


def _hash_chunk(norms: list[str], n: int) -> list[list[int]]:
    lengths = np.fromiter((len(t) for t in norms), dtype=np.int64, count=len(norms))
    cp = np.frombuffer("".join(norms).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out: list[list[int]] = [[] for _ in norms]
    if len(cp) >= n:
        h = _fold(_rolling(cp, n, len(cp) - n + 1))
        windows = np.maximum(lengths - n + 1, 0)  # valid windows per text (those inside it)
        rid = np.repeat(np.arange(len(norms), dtype=np.uint64), windows)
        pos = np.concatenate([np.arange(s, s + w) for s, w in zip(starts, windows) if w]) if windows.any() else \
            np.zeros(0, dtype=np.int64)
        keys = np.sort((rid << np.uint64(32)) | h[pos])  # sort + neighbours: faster than np.unique's hash path
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
        owner = (keys >> np.uint64(32)).astype(np.int64)
        values = (keys & _LOW32).tolist()
        bounds = np.searchsorted(owner, np.arange(len(norms) + 1))
        for r in np.flatnonzero(windows):
            out[r] = values[bounds[r]:bounds[r + 1]]
    for r in np.flatnonzero((lengths > 0) & (lengths < n)):  # shorter than n: the whole text is one shingle
        part = cp[starts[r]:ends[r]]
        out[r] = [int(_fold(_rolling(part, len(part), 1))[0])]
    return out


def _identity(value: int) -> int:
    return value


@dataclass
class NearDupResult:
    """What :func:`near_duplicates` found.

    - ``clusters``: connected components (two or more records) of the verified pairs, each sorted, in
      order of their first index; the first index is kept.
    - ``pairs``: ``(i, j, estimated_jaccard)`` with ``i < j``, the LSH candidate pairs whose MinHash
      estimate is at or above the threshold (sorted). With ``all_pairs=False``, only the pairs that
      joined two clusters (enough to connect every cluster; a cluster of k records then holds k - 1 pairs).
    - ``keep``: indices of the records kept (every record not in a cluster, and each cluster's first).
    - ``removed``: indices of the records removed, sorted.
    - ``partner``: for each removed index, ``(other index, estimated Jaccard)`` of its most similar
      verified pair (the record that made it a duplicate).
    - ``candidates``: how many candidate pairs the LSH index returned (before verification).
    """

    clusters: list[list[int]]
    pairs: list[tuple[int, int, float]]
    keep: list[int]
    removed: list[int]
    partner: dict[int, tuple[int, float]] = field(default_factory=dict)
    candidates: int = 0
    threshold: float = 0.7


LSH_WEIGHTS = (0.2, 0.8)
"""``weights`` of ``datasketch.MinHashLSH`` (false positives, false negatives). Every candidate is verified
afterwards, so a false positive costs one comparison while a false negative is a duplicate lost: the
index leans towards recall. At threshold 0.7 and 128 permutations datasketch then picks 18 bands of 7
rows, and a pair with Jaccard 0.6 / 0.7 / 0.75 / 0.8 becomes a candidate with probability 0.40 / 0.79 /
0.92 / 0.99 (``1 - (1 - J^7)^18``); with equal weights (14 bands of 9 rows) 0.13 / 0.44 / 0.67 / 0.87."""


def minhash_lsh(threshold: float, num_perm: int, weights: tuple[float, float] = LSH_WEIGHTS):
    """The ``datasketch.MinHashLSH`` index used: bands and rows chosen by datasketch for ``threshold`` and
    :data:`LSH_WEIGHTS`.

    >>> index = minhash_lsh(0.7, 128)
    >>> index.b, index.r
    (18, 7)
    """
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=threshold, num_perm=num_perm, weights=weights)


def near_duplicates(texts: Sequence[str] | Iterable[str], threshold: float = 0.7, num_perm: int = 128,
                    ngram: int = 5, seed: int = 1, *, all_pairs: bool = True) -> NearDupResult:
    """Near-duplicate clusters of ``texts`` (see the module docstring): MinHash (``num_perm``
    permutations, ``seed``) of the character ``ngram``-shingles, ``datasketch.MinHashLSH`` at
    ``threshold`` for candidates, each candidate verified by its MinHash Jaccard estimate ``>= threshold``.

    Clusters are connected components, so similarity can chain: A~B and B~C put A, B and C in one
    cluster even when A and C are less similar than ``threshold``. ``all_pairs=False`` records only the
    pairs that joined clusters (use it on large, very redundant data: a cluster of k copies has about
    k²/2 similar pairs); the clusters are the same either way.

    >>> near_duplicates(["the cat sat on the mat", "the cat sat on the mat!", "a dog"]).pairs
    [(0, 1, 0.9140625)]
    """
    from datasketch import MinHash

    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    texts = list(texts)
    n = len(texts)
    sig = np.empty((n, num_perm), dtype=np.uint32)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    lsh = minhash_lsh(threshold, num_perm)
    pairs: list[tuple[int, int, float]] = []
    candidates = 0
    minhashes = MinHash.generator(shingle_hashes(texts, ngram), num_perm=num_perm, seed=seed, hashfunc=_identity)
    for i, m in enumerate(minhashes):
        sig[i] = m.hashvalues
        found = lsh.query(m)
        if found:
            candidates += len(found)
            others = np.fromiter(found, dtype=np.int64, count=len(found))
            others.sort()
            est = np.count_nonzero(sig[others] == sig[i], axis=1) / num_perm
            for j, e in zip(others[est >= threshold].tolist(), est[est >= threshold].tolist()):
                rj, ri = find(j), find(i)
                if rj != ri:
                    parent[max(rj, ri)] = min(rj, ri)  # the smaller index stays the root
                elif not all_pairs:
                    continue
                pairs.append((j, i, e))
        lsh.insert(i, m, check_duplication=False)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    clusters = [g for g in groups.values() if len(g) > 1]
    removed = sorted(i for g in clusters for i in g[1:])
    removed_set = set(removed)
    partner: dict[int, tuple[int, float]] = {}
    for a, b, e in pairs:
        for x, y in ((a, b), (b, a)):
            if x in removed_set and (x not in partner or e > partner[x][1]):
                partner[x] = (y, e)
    pairs.sort()
    return NearDupResult(clusters=clusters, pairs=pairs, keep=[i for i in range(n) if i not in removed_set],
                         removed=removed, partner=partner, candidates=candidates, threshold=threshold)
