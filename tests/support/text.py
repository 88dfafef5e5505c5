"""Reading the CLI's human output in tests."""

from __future__ import annotations


def unwrapped(text: str) -> str:
    """`text` with every run of whitespace made one space.

    The trace's paragraphs are wrapped at 100 columns, so where a phrase breaks depends on the
    length of what comes before it (an address, a port number): a test looking for a phrase
    must not depend on where the line happened to break.
    """
    return " ".join(text.split())
