"""Self-Instruct's novelty filter: ROUGE-L (``rouge-score``) with Chinese tokenized by character.

ROUGE-L is the F-measure of the longest common subsequence (LCS) of two token sequences:
``P = LCS / len(b)``, ``R = LCS / len(a)``, ``F = 2PR / (P + R)``. rouge-score's default tokenizer keeps
only ``[a-z0-9]`` and so drops every Chinese character (a Chinese text has no tokens and scores 0
against everything); :class:`WordCJKTokenizer` is a ``rouge_score.tokenizers.Tokenizer`` whose tokens
are English words and single CJK characters (:func:`utils.curate.text.tokens`), so ROUGE-L counts
shared characters in Chinese and shared words in English.

:func:`novelty_filter` is the rule Self-Instruct (Wang et al., 2023) and Stanford Alpaca used to keep a
generated instruction: its ROUGE-L with every seed task and with every instruction kept so far must not
exceed 0.7 (both ``bootstrap_instructions.py`` and Alpaca's ``generate_instruction.py`` drop it when
``max(rouge_scores) > 0.7``: a score of exactly 0.7 is kept). Like Alpaca's ``generate_instruction.py``, each text is tokenized once and the LCS score is
taken with ``rouge_score.rouge_scorer._score_lcs`` on the tokens. The cost grows with the square of the
pool (each candidate against everything kept), unlike MinHash + LSH (:mod:`utils.curate.dedup`).

Example:
    >>> rouge_l("今天天气很好", "今天天气不好")  # LCS 今天天气好 = 5 of 6 characters each
    0.8333333333333334
    >>> from rouge_score import rouge_scorer
    >>> rouge_scorer.RougeScorer(["rougeL"]).score("今天天气很好", "今天天气不好")["rougeL"].fmeasure
    0
    >>> r = novelty_filter(["写一首关于春天的诗", "写一首关于春天的诗歌", "解释什么是光合作用"])
    >>> r.kept, r.removed
    ([0, 2], [(1, 0, 0.9473684210526316)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from rouge_score import rouge_scorer, tokenizers

from utils.curate.text import record_text, tokens

__all__ = ["WordCJKTokenizer", "rouge_l", "rouge_scorer_cjk", "NoveltyResult", "novelty_filter"]


class WordCJKTokenizer(tokenizers.Tokenizer):
    """rouge-score tokenizer: English words (lower case) and single CJK characters; punctuation dropped.

    >>> WordCJKTokenizer().tokenize("Write a poem 写诗！")
    ['write', 'a', 'poem', '写', '诗']
    """

    def tokenize(self, text: str) -> list[str]:
        return tokens(text)


_TOKENIZER = WordCJKTokenizer()


def rouge_scorer_cjk() -> rouge_scorer.RougeScorer:
    """A ``RougeScorer(["rougeL"])`` with :class:`WordCJKTokenizer`."""
    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_TOKENIZER)


_SCORER = rouge_scorer_cjk()


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure of two texts (symmetric), tokens from :class:`WordCJKTokenizer`; 0.0 if either
    has no tokens.

    >>> rouge_l("the cat sat", "the cat sat down")
    0.8571428571428571
    """
    return _SCORER.score(a, b)["rougeL"].fmeasure


def _text(item: Any) -> str:
    return item if isinstance(item, str) else record_text(item)


@dataclass
class NoveltyResult:
    """What :func:`novelty_filter` decided, candidate by candidate.

    - ``kept``: indices of the candidates kept, in order;
    - ``removed``: ``(index, partner, rouge_l)`` for each removed candidate, where ``partner`` is the
      most similar text it was compared with: ``"seed:K"`` for seed K or the index of an earlier kept
      candidate;
    - ``max_scores``: for every candidate, its highest ROUGE-L against the seeds and the candidates
      kept before it (0.0 when there was nothing to compare with);
    - ``comparisons``: how many ROUGE-L scores were computed.
    """

    kept: list[int]
    removed: list[tuple[int, str | int, float]]
    max_scores: list[float] = field(default_factory=list)
    comparisons: int = 0
    threshold: float = 0.7


def novelty_filter(candidates: Sequence[Any] | Iterable[Any], seeds: Sequence[Any] = (),
                   threshold: float = 0.7) -> NoveltyResult:
    """Self-Instruct's rule, in order: candidate k is kept when its ROUGE-L with every seed and with
    every candidate kept before it is ``<= threshold`` (removed when ``> threshold``, as in Self-Instruct's
    and Alpaca's code); a removed candidate is not compared with later ones.

    Candidates and seeds are strings (Self-Instruct compares instructions) or records (their
    :func:`~utils.curate.text.record_text`). Order matters: of two similar candidates the first is kept.

    >>> novelty_filter(["Name three fruits.", "List three colours."], seeds=["Name three fruits!"]).removed
    [(0, 'seed:0', 1.0)]
    """
    seed_tokens = [tokens(_text(s)) for s in seeds]
    pool: list[tuple[str | int, list[str]]] = [(f"seed:{k}", t) for k, t in enumerate(seed_tokens)]
    kept: list[int] = []
    removed: list[tuple[int, str | int, float]] = []
    max_scores: list[float] = []
    comparisons = 0
    for index, candidate in enumerate(candidates):
        toks = tokens(_text(candidate))
        best, partner = 0.0, None
        for name, other in pool:
            score = rouge_scorer._score_lcs(other, toks).fmeasure
            comparisons += 1
            if score > best:
                best, partner = score, name
        max_scores.append(best)
        if partner is not None and best > threshold:
            removed.append((index, partner, best))
        else:
            kept.append(index)
            pool.append((index, toks))
    return NoveltyResult(kept=kept, removed=removed, max_scores=max_scores, comparisons=comparisons,
                         threshold=threshold)
