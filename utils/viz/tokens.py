"""Token text made readable, shared by the mask views, the decoding figures and ``utils.generate``.

It holds no plotting code, so text-only modules can use it without depending on a figure module.
"""

from __future__ import annotations

VISIBLE_WHITESPACE = {"\n": "⏎", " ": "·", "\t": "→"}


def visible_token_text(text: str) -> str:
    """A token's text with spaces and newlines made visible, e.g. ``" a\\n"`` → ``"·a⏎"``.

    >>> visible_token_text(" Hi\\n")
    '·Hi⏎'
    """
    return "".join(VISIBLE_WHITESPACE.get(ch, ch) for ch in text) or "∅"
