"""The toolkit's version, read from the installed distribution ``llm-data-handbook``.

Not a constant in ``utils/__init__.py``: PyPI has an unrelated package also named ``utils``, and
installing it after this one replaces ``utils/__init__.py`` (its own modules sit beside ours), so
code that needs the version imports it from here.

>>> __version__ == _distribution_version() or __version__ == FALLBACK
True
"""

from __future__ import annotations

DISTRIBUTION = "llm-data-handbook"
FALLBACK = "0+unknown"
"""When the package is used from a source tree that was never installed."""


def _distribution_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return FALLBACK


__version__ = _distribution_version()
