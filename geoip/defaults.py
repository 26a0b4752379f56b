"""Builds the locator chain the CLI and the daemon use."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from geoip.chain import ChainLocator
from geoip.cloud import open_cloud_locator
from geoip.embedded import open_embedded
from geoip.interface import Locator
from geoip.mmdb import MmdbLocator, find_system_database
from geoip.overrides import Override, OverrideLocator
from geoip.update import default_dir, downloaded_database


def build_locator(
    overrides: Iterable[Override] = (),
    database: Path | None = None,
    system_dirs: tuple[Path, ...] | None = None,
    embedded: bool = True,
    cloud: bool = True,
    data_dir: Path | None = None,
) -> ChainLocator:
    """Overrides first, then cloud providers' ranges (feeds downloaded by `geoip update` into
    `data_dir`, default geoip.update.default_dir(), where at least as recent as the bundled
    snapshot, else the snapshot), then the user's database (`database`, else one downloaded
    into `data_dir`, else one installed in `system_dirs`, default geoip.mmdb.SYSTEM_DIRS), then
    the embedded database."""
    layers: list[Locator] = []
    override_locator = OverrideLocator(overrides)
    if len(override_locator):
        layers.append(override_locator)
    data_dir = default_dir() if data_dir is None else data_dir
    if cloud:
        layers.append(open_cloud_locator(data_dir))
    user_db = database or downloaded_database(data_dir) or find_system_database(system_dirs)
    if user_db is not None:
        layers.append(MmdbLocator(user_db))
    if embedded:
        layers.append(open_embedded())
    return ChainLocator(layers)
