"""Builds the locator chain the CLI and the daemon use."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from geoip.chain import ChainLocator
from geoip.embedded import open_embedded
from geoip.interface import Locator
from geoip.mmdb import MmdbLocator, find_system_database
from geoip.overrides import Override, OverrideLocator


def build_locator(
    overrides: Iterable[Override] = (),
    database: Path | None = None,
    system_dirs: tuple[Path, ...] | None = None,
    embedded: bool = True,
) -> ChainLocator:
    """Overrides first, then the user's database (`database`, else one installed in
    `system_dirs`, default geoip.mmdb.SYSTEM_DIRS), then the embedded database."""
    layers: list[Locator] = []
    override_locator = OverrideLocator(overrides)
    if len(override_locator):
        layers.append(override_locator)
    user_db = database or find_system_database(system_dirs)
    if user_db is not None:
        layers.append(MmdbLocator(user_db))
    if embedded:
        layers.append(open_embedded())
    return ChainLocator(layers)
