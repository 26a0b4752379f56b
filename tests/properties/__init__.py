"""Property-based tests (hypothesis): parsers, the window reader and the packet extractor."""

from __future__ import annotations

from hypothesis import settings


def budget(examples: int) -> int:
    """`examples` in the `ci` profile, scaled with the loaded profile's max_examples (100 in `ci`
    and `dev`, 10,000 in `long`): each test names what it can afford in CI."""
    return max(1, examples * settings.default.max_examples // 100)
