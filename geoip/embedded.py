"""The embedded default country database (IPFire Location via Debian tor-geoipdb; see data/NOTICE).

It ships xz-compressed. The first use decompresses it into the user's cache directory so that
later runs memory-map it; when no cache directory is writable it is read into memory instead.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import tempfile
from importlib import resources
from pathlib import Path

from geoip.mmdb import DatabaseError, MmdbLocator

RESOURCE = "ipfire-country.mmdb.xz"


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/region-auditor`, else `~/.cache/region-auditor`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "region-auditor"


def open_embedded() -> MmdbLocator:
    """A locator over the embedded database."""
    try:
        packed = resources.files("geoip").joinpath("data", RESOURCE).read_bytes()
    except OSError as e:
        raise DatabaseError(
            f"the embedded GeoIP database ({RESOURCE}) is missing from this installation; reinstall region-auditor or pass --geoip-db"
        ) from e
    digest = hashlib.sha256(packed).hexdigest()[:16]
    label = f"embedded:{RESOURCE}"
    target = cache_dir() / f"ipfire-country-{digest}.mmdb"
    if target.is_file():
        try:
            return MmdbLocator(target, label=label)
        except DatabaseError:
            pass  # the cached copy was damaged after it was written (the packed one is the truth): write it again
    try:
        _decompress_to(packed, target)
    except OSError:
        return MmdbLocator(io.BytesIO(lzma.decompress(packed)), label=label)
    return MmdbLocator(target, label=label)


def _decompress_to(packed: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".mmdb")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(lzma.decompress(packed))
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
