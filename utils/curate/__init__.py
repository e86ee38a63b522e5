"""Curation: where training data gets good -- duplicates, novelty, contamination, quality, mixing.

One module per filter (each with its rule, thresholds and failure cases in its docstring):

- ``utils.curate.text``          the text of a record, normalisation, character shingles, word/CJK tokens
- ``utils.curate.dedup``         exact duplicates; near-duplicates with MinHash + LSH (``datasketch``)
- ``utils.curate.novelty``       Self-Instruct's ROUGE-L novelty filter (``rouge-score``, CJK by character)
- ``utils.curate.contamination`` n-gram overlap with evaluation texts (decontamination)
- ``utils.curate.quality``       length, repetition, language mismatch, refusal boilerplate
- ``utils.curate.mix``           mixing sources by ratio
- ``utils.curate.pipeline``      :func:`curate`: all of them in order, with a report
- ``utils.curate.cli``           ``python -m utils curate DATA... --out OUT``

Example:
    >>> from utils.curate import curate, near_duplicates, rouge_l
    >>> rouge_l("写一首诗", "写一首歌")
    0.75
"""

import importlib

_EXPORTS = {
    "text": ["record_text", "record_sides", "normalize_text", "shingles", "tokens", "cjk_share"],
    "dedup": ["exact_duplicates", "near_duplicates", "NearDupResult", "jaccard", "shingle_hashes"],
    "novelty": ["rouge_l", "novelty_filter", "NoveltyResult", "WordCJKTokenizer"],
    "contamination": ["find_contamination", "Hit", "DEFAULT_N"],
    "quality": ["quality_flags", "quality_flags_record", "quality_issues", "quality_issues_record", "language",
                "FLAGS"],
    "mix": ["mix", "mix_counts"],
    "pipeline": ["curate", "CurateResult", "FILTERS", "instruction_text"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str):
    """Imported on first use (``rouge_score`` pulls in ``nltk``, slow to import; the CLI should not wait)."""
    if name not in _WHERE:
        raise AttributeError(f"module 'utils.curate' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"utils.curate.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
