"""The curation pipeline: every filter in one documented order, every removal with its reason.

Order (each filter sees only what the previous ones kept; cheap and certain first, so the costly ones
run on less and never report a record that an earlier, plainer reason explains):

1. ``exact`` -- identical normalised text (:func:`~utils.curate.dedup.exact_duplicates`); the first is kept.
2. ``quality`` -- :func:`~utils.curate.quality.quality_issues_record` (length, repetition, language
   mismatch between instruction and reply, refusal boilerplate).
3. ``contamination`` -- shares an n-gram with an evaluation text
   (:func:`~utils.curate.contamination.find_contamination`).
4. ``near_dup`` -- MinHash + LSH clusters (:func:`~utils.curate.dedup.near_duplicates`); the first
   record of each cluster is kept.
5. ``novelty`` -- Self-Instruct's ROUGE-L rule on the instructions (the user turns; a string record is
   its own instruction) against ``novelty_seeds`` and the instructions kept before
   (:func:`~utils.curate.novelty.novelty_filter`).

Texts compared are :func:`~utils.curate.text.record_text` (all turns) except for the novelty filter.

Example:
    >>> records = [
    ...     {"instruction": "介绍一下长城。", "output": "长城是中国古代修建的军事防御工程，全长两万多千米。"},
    ...     {"instruction": "介绍一下长城。", "output": "长城是中国古代修建的军事防御工程，全长两万多千米。"},
    ...     {"instruction": "Say hi", "output": "hi"},
    ...     {"instruction": "请介绍一下长城。", "output": "长城是中国古代修建的军事防御工程，全长两万多千米。"},
    ... ]
    >>> result = curate(records)
    >>> result.counts
    {'records': 4, 'exact': 1, 'quality': 1, 'contamination': 0, 'near_dup': 1, 'novelty': 0, 'kept': 1}
    >>> [(r["index"], r["filter"], r["partner"]) for r in result.removed]
    [(1, 'exact', 0), (2, 'quality', None), (3, 'near_dup', 0)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from utils.curate.contamination import DEFAULT_N, find_contamination
from utils.curate.dedup import exact_duplicates, near_duplicates
from utils.curate.quality import quality_issues, quality_issues_record
from utils.curate.text import record_sides, record_text

__all__ = ["FILTERS", "CurateResult", "curate", "instruction_text"]

FILTERS = ("exact", "quality", "contamination", "near_dup", "novelty")
"""The filters in the order :func:`curate` applies them."""


def instruction_text(record: Any) -> str:
    """What the novelty filter compares: a string itself; an Alpaca record's (or a seed task's)
    ``instruction`` alone, as Self-Instruct and Alpaca compare instructions without their inputs; else
    the user turns joined with ``"\\n"``.

    >>> instruction_text({"instruction": "Translate", "input": "你好", "output": "Hello"})
    'Translate'
    """
    if isinstance(record, str):
        return record
    if isinstance(record, Mapping) and isinstance(record.get("instruction"), str) and record["instruction"].strip():
        return record["instruction"]
    return record_sides(record)[0]


@dataclass
class CurateResult:
    """What :func:`curate` kept and removed.

    - ``kept``: the kept records, in input order; ``kept_indices`` their indices;
    - ``removed``: one dict per removed record, sorted by index: ``index``, ``location`` (``FILE:LINE``
      when ``locations`` were given, else ``[INDEX]``), ``filter`` (one of :data:`FILTERS`), ``reason``,
      ``partner`` (the record it duplicates: an index; ``"eval:K"`` / ``"seed:K"`` for evaluation texts and
      novelty seeds; ``None`` for quality) and ``partner_location``;
    - ``counts``: ``records``, then how many each filter removed, then ``kept``;
    - ``flags``: how many records raised each quality flag (a record may raise several);
    - ``settings``: the options used.
    """

    kept: list[Any]
    kept_indices: list[int]
    removed: list[dict[str, Any]]
    counts: dict[str, int]
    flags: dict[str, int] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def report(self):
        """The removed records as a ``pandas.DataFrame`` (one row each, columns as in ``removed``)."""
        import pandas as pd

        columns = ["index", "location", "filter", "reason", "partner", "partner_location"]
        frame = pd.DataFrame(self.removed, columns=columns)
        frame["partner"] = pd.Series([r["partner"] for r in self.removed], dtype=object)  # ints, strings, None
        return frame

    def summary(self):
        """Counts per filter as a ``pandas.DataFrame`` (``step``, ``removed``, ``remaining``)."""
        import pandas as pd

        rows, left = [], self.counts["records"]
        for name in FILTERS:
            left -= self.counts[name]
            rows.append({"step": name, "removed": self.counts[name], "remaining": left})
        return pd.DataFrame(rows)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``counts``, ``flags``, ``settings``, ``removed``."""
        return {"counts": dict(self.counts), "flags": dict(self.flags), "settings": dict(self.settings),
                "removed": [dict(r) for r in self.removed]}


def _where(locations: Sequence[str] | None, index: int) -> str:
    return locations[index] if locations is not None else f"[{index}]"


def _texts_of(items: Sequence[Any]) -> list[str]:
    return [item if isinstance(item, str) else record_text(item) for item in items]


def curate(records: Sequence[Any], *, near_dup: float | None = 0.7, decontaminate: Sequence[str] | None = None,
           novelty: float | None = None, quality: bool | Mapping[str, Any] = True,
           locations: Sequence[str] | None = None, novelty_seeds: Sequence[Any] = (),
           contamination_n: int = DEFAULT_N, eval_locations: Sequence[str] | None = None,
           seed_locations: Sequence[str] | None = None, num_perm: int = 128, ngram: int = 5) -> CurateResult:
    """Apply the filters of :data:`FILTERS` in order (see the module docstring).

    ``near_dup``: the Jaccard threshold, or None to skip; ``decontaminate``: evaluation texts (or
    records), or None; ``novelty``: the ROUGE-L threshold (Self-Instruct: 0.7) or None, against
    ``novelty_seeds``; ``quality``: True, False, or a dict of options for
    :func:`~utils.curate.quality.quality_issues_record` (``min_chars``, ``max_chars``). ``locations``
    (one ``FILE:LINE`` per record) and ``eval_locations`` / ``seed_locations`` name records in the report.

    >>> curate(["same text here", "Same  text here", "other text here"], quality=False).kept
    ['same text here', 'other text here']
    """
    records = list(records)
    if locations is not None and len(locations) != len(records):
        raise ValueError(f"locations has {len(locations)} entries for {len(records)} records")
    texts = _texts_of(records)
    alive = list(range(len(records)))
    removed: list[dict[str, Any]] = []
    counts = {"records": len(records), **{name: 0 for name in FILTERS}}
    flags: dict[str, int] = {}

    def drop(index: int, filter_: str, reason: str, partner: Any = None, partner_location: str | None = None):
        if isinstance(partner, int) and partner_location is None:
            partner_location = _where(locations, partner)
        removed.append({"index": index, "location": _where(locations, index), "filter": filter_, "reason": reason,
                        "partner": partner, "partner_location": partner_location})
        counts[filter_] += 1

    # 1. exact duplicates
    gone: set[int] = set()
    for group in exact_duplicates(texts):
        for index in group[1:]:
            drop(index, "exact", f"same normalised text as {_where(locations, group[0])}", group[0])
            gone.add(index)
    alive = [i for i in alive if i not in gone]

    # 2. quality
    if quality:
        options = dict(quality) if isinstance(quality, Mapping) else {}
        survivors = []
        for i in alive:
            record = records[i]
            issues = quality_issues(record, **options) if isinstance(record, str) else \
                quality_issues_record(record, **options)
            for flag, _ in issues:
                flags[flag] = flags.get(flag, 0) + 1
            if issues:
                drop(i, "quality", "; ".join(f"{f}: {d}" for f, d in issues))
            else:
                survivors.append(i)
        alive = survivors

    # 3. contamination
    if decontaminate:
        eval_texts = _texts_of(list(decontaminate))
        first_hit: dict[int, Any] = {}
        for hit in find_contamination([texts[i] for i in alive], eval_texts, n=contamination_n):
            first_hit.setdefault(alive[hit.index], hit)
        for i in alive:
            if i in first_hit:
                hit = first_hit[i]
                where = eval_locations[hit.eval_index] if eval_locations is not None else f"eval[{hit.eval_index}]"
                more = f" ({hit.count} shared n-grams)" if hit.count > 1 else ""
                drop(i, "contamination", f"shares {hit.ngram!r} with evaluation text {where}{more}",
                     f"eval:{hit.eval_index}", where)
        alive = [i for i in alive if i not in first_hit]

    # 4. near duplicates
    if near_dup is not None:
        result = near_duplicates([texts[i] for i in alive], threshold=near_dup, num_perm=num_perm, ngram=ngram,
                                 all_pairs=False)
        for cluster in result.clusters:
            for local in cluster[1:]:
                other, estimate = result.partner[local]
                drop(alive[local], "near_dup", f"estimated Jaccard {estimate:.2f} >= {near_dup} with "
                                               f"{_where(locations, alive[other])} (cluster of {len(cluster)}, "
                                               f"kept {_where(locations, alive[cluster[0]])})", alive[other])
        alive = [alive[k] for k in result.keep]

    # 5. novelty (Self-Instruct)
    if novelty is not None:
        from utils.curate.novelty import novelty_filter

        result = novelty_filter([instruction_text(records[i]) for i in alive],
                                seeds=[instruction_text(s) for s in novelty_seeds], threshold=novelty)
        for local, partner, score in result.removed:
            if isinstance(partner, str):
                k = int(partner.split(":")[1])
                where = seed_locations[k] if seed_locations is not None else f"seed[{k}]"
                drop(alive[local], "novelty", f"ROUGE-L {score:.2f} > {novelty} with seed {where}", partner, where)
            else:
                drop(alive[local], "novelty", f"ROUGE-L {score:.2f} > {novelty} with "
                                              f"{_where(locations, alive[partner])}", alive[partner])
        alive = [alive[k] for k in result.kept]

    removed.sort(key=lambda r: r["index"])
    counts["kept"] = len(alive)
    settings = {"near_dup": near_dup, "decontaminate": len(decontaminate) if decontaminate else None,
                "contamination_n": contamination_n, "novelty": novelty, "novelty_seeds": len(novelty_seeds),
                "quality": bool(quality), "num_perm": num_perm, "ngram": ngram}
    if isinstance(quality, Mapping):
        settings["quality_options"] = dict(quality)
    return CurateResult(kept=[records[i] for i in alive], kept_indices=alive, removed=removed, counts=counts,
                        flags=flags, settings=settings)
