"""The TOML configuration: sites, organizations, overrides, sources, store, geoip.

```toml
[[site]]                # where a network's traffic leaves to the internet
name = "hk-office"
networks = ["10.20.0.0/16"]
egress_ip = "43.198.12.34"
[[org]]                 # who owns a client network
name = "acme-research"
networks = ["10.20.1.0/24"]
[[override]]            # operator says: this network is in this country
network = "198.51.100.0/24"
country = "SG"
[[source]]              # what is known about a log file's proxy
path = "/var/log/squid/access.log*"
egress_ip = "203.0.113.7"
org = "acme-research"
format = "json"         # optional: the file's format (else detected); json needs a field map
fields = { ts = "time", orig_h = "client.ip", server_name = "request.host" }
[store]
url = "sqlite:////var/lib/region-auditor/findings.db"
[geoip]
database = "/usr/share/GeoIP/GeoLite2-Country.mmdb"
```
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditor.sources import jsonmap, wrapped
from auditor.sources.formats import FORMATS, format_named
from geoip.overrides import Network, Override


class ConfigError(Exception):
    """The configuration is unreadable or invalid; the message names the entry and the fix."""


@dataclass(frozen=True)
class Site:
    """A place whose traffic leaves to the internet from one public address."""

    name: str
    """Site name, shown as the egress basis `site:<name>`."""
    networks: tuple[Network, ...]
    """Client networks at the site."""
    egress_ip: str
    """The site's public (NAT or proxy) address."""


@dataclass(frozen=True)
class Org:
    """An organization, attributed by its client networks or its platform projects."""

    name: str
    """Organization name."""
    networks: tuple[Network, ...]
    """Client networks it owns."""
    vercel_projects: tuple[str, ...] = ()
    """Vercel project ids or names it owns (`prj_...`, `my-app`)."""


@dataclass(frozen=True)
class SourceConfig:
    """What is known about one log source (matched by path or glob)."""

    path: str
    """Path or glob (`/var/log/squid/access.log*`)."""
    egress_ip: str = ""
    """The proxy's own public address, "" when not known."""
    org: str = ""
    """Organization for clients no [[org]] network matches, "" for none."""
    format: str = ""
    """The files' log format (a --format name), "" to detect it."""
    fields: tuple[tuple[str, str], ...] = ()
    """Field map of format `json`: (event field, dotted path) pairs."""

    @property
    def field_map(self) -> dict[str, str] | None:
        """`fields` as a dict, None when there is none."""
        return dict(self.fields) if self.fields else None

    def matches(self, path: str) -> bool:
        """True when this entry describes the file at `path`."""
        if path == "-":
            return self.path == "-"
        real = os.path.realpath(path)
        pattern = self.path if self.path == "-" else os.path.realpath(os.path.expanduser(self.path))
        return fnmatch.fnmatchcase(real, pattern) or fnmatch.fnmatchcase(path, self.path)


@dataclass(frozen=True)
class Config:
    """The whole configuration; every part is optional."""

    sites: tuple[Site, ...] = ()
    """[[site]] entries."""
    orgs: tuple[Org, ...] = ()
    """[[org]] entries."""
    overrides: tuple[Override, ...] = ()
    """[[override]] entries."""
    sources: tuple[SourceConfig, ...] = ()
    """[[source]] entries."""
    store_url: str = ""
    """[store] url, "" for the default."""
    geoip_database: str = ""
    """[geoip] database, "" for the default search."""
    providers: tuple[str, ...] = ()
    """[policy] providers: the packs to audit against, () for all shipped packs."""
    path: str = field(default="", compare=False)
    """The file it was read from, "" for the empty default."""

    def source(self, path: str) -> SourceConfig:
        """The [[source]] entry for `path`, or an empty one."""
        for entry in self.sources:
            if entry.matches(path):
                return entry
        return SourceConfig(path=path)


_KEYS = {
    "site": {"name", "networks", "egress_ip"},
    "org": {"name", "networks", "vercel_projects"},
    "override": {"network", "country", "region"},
    "source": {"path", "egress_ip", "org", "format", "fields"},
}
_TABLES = {"store": {"url"}, "geoip": {"database"}}


def _network(text: Any, where: str) -> Network:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise ConfigError(f'{where}: {text!r} is not a network; write it in CIDR form like "10.20.0.0/16"') from None


def _address(text: Any, where: str) -> str:
    if text is None:
        raise ConfigError(f"{where}: 'egress_ip' is missing; give the public address its calls leave from, like \"203.0.113.7\"")
    if not isinstance(text, str):
        raise ConfigError(f"{where}: 'egress_ip' must be a string like \"203.0.113.7\"")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(f'{where}: {text!r} is not an IP address; write it like "203.0.113.7"') from None


def _string(entry: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    return value


def _path(entry: Mapping[str, Any], where: str) -> str:
    value = _string(entry, "path", where)
    if "\x00" in value:
        raise ConfigError(f"{where}: 'path' holds a NUL character, which no file name can")
    return value


def _networks(entry: Mapping[str, Any], where: str) -> tuple[Network, ...]:
    value = entry.get("networks")
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: 'networks' must be a non-empty list of CIDR strings")
    return tuple(_network(n, where) for n in value)


def _format(entry: Mapping[str, Any], where: str) -> str:
    fmt = _string(entry, "format", where, required=False)
    if fmt and format_named(fmt) is None:
        raise ConfigError(
            f"{where}: format {fmt!r} is not a log format; use one of {', '.join(FORMATS)} (or one of them inside a wrapper: "
            f"squid+{', squid+'.join(wrapped.KINDS)}), or leave it out to detect it"
        )
    return fmt


def _inner(entry: Mapping[str, Any]) -> object:
    """The format of the lines (`json` for `json+docker`)."""
    fmt = entry.get("format")
    return fmt.partition("+")[0] if isinstance(fmt, str) else fmt


def _fields(entry: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    example = 'fields = { ts = "time", server_name = "request.host" }'
    fields = entry.get("fields")
    if fields is None:
        if _inner(entry) == jsonmap.NAME:
            raise ConfigError(f'{where}: format = "json" needs a field map; add {example}')
        return ()
    if not isinstance(fields, dict):
        raise ConfigError(f"{where}: 'fields' must be a table of event field = \"dotted.path\", like {example}")
    if _inner(entry) != jsonmap.NAME:
        raise ConfigError(f"{where}: 'fields' is read only with format = \"json\"; add that, or remove 'fields'")
    problem = jsonmap.check_map(fields)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return tuple(sorted(fields.items()))


def _entries(data: Mapping[str, Any], name: str, where: str) -> list[tuple[str, Mapping[str, Any]]]:
    raw = data.get(name, [])
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: '{name}' must be written as [[{name}]] tables")
    out: list[tuple[str, Mapping[str, Any]]] = []
    for i, entry in enumerate(raw, 1):
        ewhere = f"{where}: [[{name}]] #{i}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{ewhere}: must be a table")
        unknown = set(entry) - _KEYS[name]
        if unknown:
            allowed = ", ".join(sorted(_KEYS[name]))
            raise ConfigError(f"{ewhere}: unknown key {min(unknown)!r}; allowed keys: {allowed}")
        out.append((ewhere, entry))
    return out


def parse_config(data: Mapping[str, Any], where: str) -> Config:
    """Validate parsed TOML; every error names the entry."""
    unknown = set(data) - set(_KEYS) - set(_TABLES) - {"policy"}
    if unknown:
        raise ConfigError(
            f"{where}: unknown section {min(unknown)!r}; known: [[site]], [[org]], [[override]], [[source]], [store], [geoip], [policy]"
        )
    sites = tuple(Site(_string(e, "name", w), _networks(e, w), _address(e.get("egress_ip"), w)) for w, e in _entries(data, "site", where))
    orgs = []
    for w, e in _entries(data, "org", where):
        projects = e.get("vercel_projects", [])
        if not isinstance(projects, list) or not all(isinstance(p, str) and p for p in projects):
            raise ConfigError(f"{w}: 'vercel_projects' must be a list of Vercel project ids or names")
        if "networks" not in e and not projects:
            raise ConfigError(f"{w}: give 'networks' (client CIDRs) or 'vercel_projects', or both")
        networks = _networks(e, w) if "networks" in e else ()
        orgs.append(Org(_string(e, "name", w), networks, tuple(projects)))
    overrides = []
    for w, e in _entries(data, "override", where):
        country = _string(e, "country", w).upper()
        if len(country) != 2 or not (country.isascii() and country.isalpha()):
            raise ConfigError(f'{w}: country {country!r} is not an ISO 3166-1 alpha-2 code like "SG"')
        region = _string(e, "region", w, required=False).upper()
        if region and not region.startswith(country + "-"):
            raise ConfigError(f'{w}: region {region!r} is not an ISO 3166-2 code of {country} like "{country}-01"')
        overrides.append(Override(_network(e.get("network"), w), country, region))
    sources = tuple(
        SourceConfig(
            path=_path(e, w),
            egress_ip=_address(e["egress_ip"], w) if "egress_ip" in e else "",
            org=_string(e, "org", w, required=False),
            format=_format(e, w),
            fields=_fields(e, w),
        )
        for w, e in _entries(data, "source", where)
    )
    tables: dict[str, dict[str, str]] = {}
    for name, keys in _TABLES.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{name}] must be a table")
        bad = set(table) - keys
        if bad:
            raise ConfigError(f"{where}: [{name}] has unknown key {min(bad)!r}; allowed: {', '.join(sorted(keys))}")
        tables[name] = {k: _string(table, k, f"{where}: [{name}]") for k in table}
    policy = data.get("policy", {})
    if not isinstance(policy, dict) or set(policy) - {"providers"}:
        raise ConfigError(f'{where}: [policy] takes one key, providers = ["openai", ...]')
    providers = policy.get("providers", [])
    if not isinstance(providers, list) or not all(isinstance(p, str) and p for p in providers):
        raise ConfigError(f'{where}: [policy] providers must be a list of provider ids like ["openai"]')
    return Config(
        providers=tuple(providers),
        sites=sites,
        orgs=tuple(orgs),
        overrides=tuple(overrides),
        sources=sources,
        store_url=tables["store"].get("url", ""),
        geoip_database=tables["geoip"].get("database", ""),
        path=where,
    )


def load_config(path: Path | None) -> Config:
    """Read and validate a config file; None gives the empty configuration."""
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM, as Windows editors write, is not TOML
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; check the path given to --config") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file ({e})") from None
    try:
        data = tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, and integers over 4300 digits
        raise ConfigError(f"{path}: not valid TOML ({str(e)[:200]}); fix the file and run again") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deeply to read; fix the file and run again") from None
    return parse_config(data, str(path))
