"""The region-auditor command line: thin click commands that build, call and translate errors."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from auditor import __version__
from auditor.attribution import Attributor
from auditor.config import Config, ConfigError, load_config
from auditor.pipeline import Auditor
from auditor.report.interface import FormatChoice, ReportError
from auditor.runner import audit_logs
from auditor.sources.interface import SourceError
from auditor.sources.logfile import FORMATS
from auditor.store import SqlStore, StoreError, default_db_path
from geoip.chain import ChainLocator
from geoip.defaults import build_locator
from geoip.interface import LocatorError
from rules.policy import Outcome, PolicyError, load_policies

EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_INPUT = 3


class Failure(click.ClickException):
    """An error for the user: one sentence, and an exit code by kind."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Group(click.Group):
    """Translates the packages' error bases into exit codes, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:
            raise Failure(str(e), EXIT_USAGE) from e
        except PolicyError as e:
            raise Failure(str(e), EXIT_USAGE) from e
        except (SourceError, LocatorError, StoreError, ReportError) as e:
            raise Failure(str(e), EXIT_INPUT) from e


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="region-auditor")
def cli() -> None:
    """Find which organizations call an AI provider's API from a region it does not serve."""


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
        help="TOML config: sites, orgs, overrides, sources, store, geoip.",
    )(f)


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db", "db", metavar="PATH_OR_URL",
        help=f"Findings database: a SQLite path or SQLAlchemy URL (default: [store] url, else {default_db_path()}).",
    )(f)


def geoip_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--geoip-db", "geoip_db", type=click.Path(path_type=Path, dir_okay=False),
        help="MMDB country database to use before the embedded one (default: [geoip] database, "
        "else GeoIP2/GeoLite2 in /usr/share/GeoIP or /var/lib/GeoIP).",
    )(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def _locator(config: Config, geoip_db: Path | None) -> ChainLocator:
    database = geoip_db or (Path(config.geoip_database) if config.geoip_database else None)
    return build_locator(config.overrides, database)


def _store(config: Config, db: str | None) -> SqlStore:
    return SqlStore(db or config.store_url or str(default_db_path()))


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@config_option
@db_option
@geoip_option
@json_option
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), help="Log format (default: detected per file).")
def logs(files: tuple[str, ...], config_path: Path | None, db: str | None, geoip_db: Path | None, as_json: bool, fmt: str | None) -> None:
    """Audit proxy logs (Squid native, nginx/Apache combined; plain, gzip, bz2, xz; - for stdin).

    Prints one row per (org, provider, host, egress, verdict). Exit 0: no violation; 1: violations
    found; 2: usage or config error; 3: input error. Lines audited before are not counted again.
    """
    config = load_config(config_path)
    auditor = Auditor(load_policies(), _locator(config, geoip_db), Attributor(config))
    store = _store(config, db)
    summary = audit_logs(files, config=config, auditor=auditor, store=store, fmt=fmt, command="logs")
    for item in summary.inputs:
        click.echo(item.describe(), err=True)
    rows = store.rows(summary.source_ids)
    _print_rows(rows, as_json)


@cli.command()
@config_option
@db_option
@json_option
def findings(config_path: Path | None, db: str | None, as_json: bool) -> None:
    """Print every row in the findings database (same rows and exit codes as `logs`)."""
    config = load_config(config_path)
    _print_rows(_store(config, db).rows(), as_json)


def _print_rows(rows: list[Any], as_json: bool) -> None:
    choice = FormatChoice.JSON if as_json else FormatChoice.TABLE
    click.echo(choice.to_format().render(rows), nl=False)
    if any(r.verdict == Outcome.VIOLATION.value for r in rows):
        sys.exit(EXIT_VIOLATIONS)


@cli.group()
def rules() -> None:
    """Provider policy packs: supported countries, governed hosts, dated versions."""


@rules.command("show")
@click.argument("provider", required=False)
@json_option
def rules_show(provider: str | None, as_json: bool) -> None:
    """List the packs, or one provider's pack in full."""
    policies = load_policies()
    if provider is None:
        for pack in policies.packs:
            newest = pack.versions[-1]
            click.echo(f"{pack.provider}\t{pack.name}\t{newest.id} (in force from {newest.in_force_from})\t{len(newest.supported)} supported")
        return
    pack = policies.get(provider)
    if as_json:
        click.echo(json.dumps(_pack_dict(pack), indent=2, ensure_ascii=False))
        return
    click.echo(f"{pack.name} ({pack.provider})")
    click.echo(f"source: {pack.source_url}")
    click.echo(f"governed hosts: {', '.join(pack.hosts)}")
    if pack.blocked_error_code:
        click.echo(f"blocked calls answer: {pack.blocked_error_code}")
    for v in pack.versions:
        click.echo("")
        click.echo(f"version {v.id}: {v.label}")
        click.echo(f"  in force from {v.in_force_from}, enforced from {v.enforced_from}")
        for note in v.notes:
            click.echo(f"  note: {note}")
        for src in v.sources:
            click.echo(f"  source: {src}")
        click.echo(f"  supported ({len(v.supported)}):")
        for code, name in sorted(v.supported.items()):
            click.echo(f"    {code}  {name}")
        for x in v.exclusions:
            flag = " (inferred)" if x.inferred else ""
            click.echo(f"  excluded: {x.code}  {x.name}{flag}: {x.basis}")


def _pack_dict(pack: Any) -> dict[str, Any]:
    return {
        "provider": pack.provider, "name": pack.name, "source_url": pack.source_url, "hosts": list(pack.hosts),
        "blocked_error_code": pack.blocked_error_code,
        "versions": [
            {
                "id": v.id, "label": v.label, "in_force_from": v.in_force_from.isoformat(),
                "enforced_from": v.enforced_from.isoformat(), "supported": dict(sorted(v.supported.items())),
                "excluded_subdivisions": [x.__dict__ for x in v.exclusions],
                "sources": list(v.sources), "notes": list(v.notes),
            }
            for v in pack.versions
        ],
    }


@rules.command("check")
@click.argument("provider")
@click.argument("code")
@click.option("--date", "when", type=click.DateTime(["%Y-%m-%d"]), help="Judge as of this date (default: today).")
def rules_check(provider: str, code: str, when: dt.datetime | None) -> None:
    """Is a country (HK) or subdivision (UA-43) supported? Exit 0 supported, 1 not supported."""
    pack = load_policies().get(provider)
    verdict = pack.check(code, when.date() if when else None)
    version = pack.version(verdict.policy_version.split("@", 1)[1])
    supported = verdict.outcome is Outcome.ALLOWED
    click.echo(f"{code.upper()}: {'supported' if supported else 'not supported'} by {pack.name}")
    click.echo(f"  {verdict.reason}")
    click.echo(f"  rule {verdict.rule_id}; version {version.id} in force from {version.in_force_from}")
    click.echo(f"  source: {pack.source_url}")
    if not supported:
        sys.exit(EXIT_VIOLATIONS)


@cli.group()
def geoip() -> None:
    """GeoIP data: look addresses up through the locator chain."""


@geoip.command("lookup")
@click.argument("addresses", nargs=-1, required=True, metavar="IP...")
@config_option
@geoip_option
@json_option
def geoip_lookup(addresses: tuple[str, ...], config_path: Path | None, geoip_db: Path | None, as_json: bool) -> None:
    """Locate addresses: country, registered country, network and the basis of the answer."""
    config = load_config(config_path)
    locator = _locator(config, geoip_db)
    results = []
    for ip, loc in locator.locate_all(addresses):
        results.append({
            "ip": ip, "country": loc.country_code, "registered_country": loc.registered_country_code,
            "region": loc.region_code, "network": loc.network, "basis": loc.basis, "source_version": loc.source_version,
        })
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        registered = f" (registered {r['registered_country']})" if r["registered_country"] else ""
        click.echo(f"{r['ip']}\t{r['country'] or '-'}{registered}\t{r['network'] or '-'}\t{r['basis']}")


def main() -> None:
    cli(prog_name="region-auditor")
