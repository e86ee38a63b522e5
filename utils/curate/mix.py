"""Mixing sources by ratio: how many records each source gives, drawn without replacement.

Example:
    >>> sources = {"zh": [f"zh{i}" for i in range(10)], "en": [f"en{i}" for i in range(10)]}
    >>> mixed = mix(sources, {"zh": 0.7, "en": 0.3}, total=10, seed=0)
    >>> sorted(name for name, _ in mixed).count("zh")
    7
    >>> mix_counts({"zh": 0.7, "en": 0.3}, total=10)
    {'zh': 7, 'en': 3}
    >>> mix(sources, {"zh": 0.7, "en": 0.3}, total=20)
    Traceback (most recent call last):
    ...
    ValueError: source 'zh': 14 records asked (ratio 0.7 of total 20) but only 10 available; lower total or the ratio, or pass replace=True to repeat records
"""

from __future__ import annotations

import random
from typing import Any, Mapping, Sequence

__all__ = ["mix", "mix_counts"]


def mix_counts(ratios: Mapping[str, float], total: int) -> dict[str, int]:
    """Records per source for ``total`` records: ratios normalised to sum 1, ``floor(total * ratio)``
    each, the remainder given one by one to the largest fractional parts (ties: first listed), so the
    counts sum to ``total`` exactly (the largest-remainder method).

    >>> mix_counts({"a": 1, "b": 1, "c": 1}, total=10)
    {'a': 4, 'b': 3, 'c': 3}
    """
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    if not ratios:
        raise ValueError("ratios is empty: give each source a ratio")
    bad = {k: v for k, v in ratios.items() if not v >= 0}
    if bad:
        raise ValueError(f"ratios must be >= 0, got {bad}")
    weight = sum(ratios.values())
    if weight <= 0:
        raise ValueError("ratios sum to 0: give at least one source a positive ratio")
    exact = {k: total * v / weight for k, v in ratios.items()}
    counts = {k: int(x) for k, x in exact.items()}
    order = sorted(exact, key=lambda k: -(exact[k] - counts[k]))  # stable: ties keep the listed order
    for k in order[:total - sum(counts.values())]:
        counts[k] += 1
    return counts


def mix(sources: Mapping[str, Sequence[Any]], ratios: Mapping[str, float], total: int, seed: int = 0,
        *, replace: bool = False) -> list[tuple[str, Any]]:
    """``total`` records drawn from ``sources`` in the proportions ``ratios`` (:func:`mix_counts`), as
    ``(source name, record)`` pairs shuffled together (``random.Random(seed)``: reproducible).

    Each source is sampled without replacement. A source asked for more records than it has is an error
    that says how many were asked and how many exist, unless ``replace=True``: then every record of it
    is taken as many whole times as fit and the rest drawn without replacement (records repeat as evenly
    as possible, like training a small source for several epochs).

    >>> len(mix({"a": [1, 2], "b": [3]}, {"a": 0.5, "b": 0.5}, total=4, replace=True))
    4
    """
    missing = [k for k in ratios if k not in sources]
    if missing:
        raise ValueError(f"ratios name sources that do not exist: {missing} (sources: {list(sources)})")
    unrated = [k for k in sources if k not in ratios]
    if unrated:
        raise ValueError(f"sources without a ratio: {unrated}; give each a ratio (0 to leave it out)")
    counts = mix_counts(ratios, total)
    weight = sum(ratios.values())
    rng = random.Random(seed)
    out: list[tuple[str, Any]] = []
    for name, count in counts.items():
        records = sources[name]
        available = len(records)
        if count > available and not replace:
            raise ValueError(f"source {name!r}: {count} records asked (ratio {ratios[name] / weight:.3g} of total "
                             f"{total}) but only {available} available; lower total or the ratio, or pass "
                             "replace=True to repeat records")
        if count and not available:
            raise ValueError(f"source {name!r} is empty but {count} records are asked from it")
        whole, rest = divmod(count, available) if available else (0, 0)
        picks = list(range(available)) * whole + rng.sample(range(available), rest)
        out += [(name, records[i]) for i in picks]
    rng.shuffle(out)
    return out
