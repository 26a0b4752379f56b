"""The region-auditor command line: thin click commands that build, call and translate errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gc
import json
import logging
import sys
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import click

from auditor import __version__
from auditor import log as logs_setup
from auditor.config import Config, ConfigError, load_config
from auditor.inputs import expand as expand_inputs
from auditor.pipeline import Pipeline, Recipe
from auditor.recorder import Recorder, RunSummary, dns_named, new_rows_printer
from auditor.report.interface import FormatChoice, ReportChoice, ReportError
from auditor.report.model import LEVELS
from auditor.sources.formats import FORMATS, format_named
from auditor.sources.interface import SourceError
from auditor.sources.wrapped import KINDS as WRAPPERS
from auditor.store import FindingStore, StoreError, default_db_path
from geoip import regions
from geoip import update as geoip_update_data
from geoip.chain import ChainLocator
from geoip.defaults import build_locator
from geoip.feeds import PROVIDERS
from geoip.interface import Location, LocatorError
from rules.policy import Outcome, Pack, PolicyError, load_policies

log = logging.getLogger(__name__)
"""Messages that are not a command's output (auditor.log sends them to stderr)."""

EXIT_VIOLATIONS = 1
EXIT_USAGE = 2
EXIT_INPUT = 3


class Failure(click.ClickException):
    """An error for the user: one sentence, and an exit code by kind."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a ClassVar; each Failure has its own code

    def show(self, file: Any = None) -> None:
        """`Error: <message>` on stderr, as click says it, through the log (a JSON line with --log-format json)."""
        if file is not None:
            super().show(file)
            return
        log.error(f"Error: {self.format_message()}")


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
@click.option(
    "--log-format",
    type=click.Choice(logs_setup.FORMATS),
    default="text",
    show_default=True,
    help="How messages that are not the command's output (notes, progress, summaries, new rows) are written "
    "on stderr: text, or JSON lines (time, level, logger, message).",
)
def cli(log_format: str) -> None:
    """Find which organizations call an AI provider's API from a region it does not serve."""
    logs_setup.configure(log_format)


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path, dir_okay=False),
        help="TOML config: sites, orgs, overrides, sources, store, geoip.",
    )(f)


def db_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        "db",
        metavar="PATH_OR_URL",
        help="Findings database: a SQLite path or SQLAlchemy URL (default: [store] url, else "
        "$XDG_DATA_HOME/region-auditor/findings.db, ~/.local/share/region-auditor/findings.db when unset).",
    )(f)


def geoip_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--geoip-db",
        "geoip_db",
        type=click.Path(path_type=Path, dir_okay=False),
        help="MMDB country database to use before the embedded one (default: [geoip] database, "
        "else GeoIP2/GeoLite2 in /usr/share/GeoIP or /var/lib/GeoIP).",
    )(f)


def provider_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--provider",
        "providers",
        multiple=True,
        metavar="ID",
        help="Audit only calls to this provider (repeatable; default: [policy] providers, else all packs).",
    )(f)


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def fail_on_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--fail-on",
        "fail_on",
        type=click.Choice(LEVELS),
        default="violation",
        metavar="LEVEL",
        help="Exit 1 when any finding is at LEVEL or worse: violation (default) > at_risk > unknown. The CI gate.",
    )(f)


def audit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """FILE... and the options every auditing command takes."""
    for decorate in (fail_on_option, provider_option, json_option, geoip_option, db_option, config_option):
        f = decorate(f)
    return click.argument("files", nargs=-1, required=True, metavar="FILE...")(f)


def _locator(config: Config, geoip_db: Path | None) -> ChainLocator:
    database = geoip_db or (Path(config.geoip_database) if config.geoip_database else None)
    return build_locator(config.overrides, database)


def _store(config: Config, db: str | None, *, create: bool = True) -> FindingStore:
    """The findings database; `create=False` for commands that only read it (see SqlStore)."""
    from auditor.sqlstore import SqlStore  # SQLAlchemy is loaded only by commands that store

    store = SqlStore(db or config.store_url or str(default_db_path()), create=create)
    for notice in store.notices:
        log.warning(notice)
    context = click.get_current_context(silent=True)
    if context is not None:
        context.call_on_close(store.close)  # also when the command exits 1 on violations
    return store


class FormatName(click.ParamType):  # type: ignore[type-arg, unused-ignore]  # generic from click 8.4 only; 8.1 is allowed
    """A --format name: a log format, or one inside a wrapper (`squid+docker`)."""

    name = "format"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if format_named(value) is None:
            self.fail(
                f"{value!r} is not a log format; known: {', '.join(sorted(FORMATS))}, each also inside a wrapper "
                f"({'/'.join('+' + k for k in WRAPPERS)})",
                param,
                ctx,
            )
        return str(value)


@cli.command()
@audit_options
@click.option(
    "--format",
    "fmt",
    type=FormatName(),
    help=f"Log format: {', '.join(sorted(FORMATS))}; read inside the wrapper "
    f"its first lines are in, or name one (squid+{', squid+'.join(WRAPPERS)}). Default: detected per file.",
)
@click.option(
    "--follow",
    is_flag=True,
    help="Keep reading the files as they grow, like tail -F (rotation, copytruncate, files not created yet) "
    "until SIGTERM or Ctrl-C; new rows on stderr, the table at the end.",
)
@click.option("--rescan", is_flag=True, help="Forget what earlier runs recorded for these inputs and audit them again from the start.")
def logs(
    files: tuple[str, ...],
    config_path: Path | None,
    db: str | None,
    geoip_db: Path | None,
    as_json: bool,
    fmt: str | None,
    providers: tuple[str, ...],
    follow: bool,
    rescan: bool,
    fail_on: str,
) -> None:
    """Audit proxy and network logs (Squid, nginx/Apache, nginx stream, Nginx Proxy Manager, HAProxy,
    Envoy, Zeek, Suricata, AWS Network Firewall, Vercel, Cloudflare, JSON with a field map; plain,
    gzip, bz2, xz, zstd; - for stdin; a directory for the files in it).

    Prints one row per (org, provider, host, egress, verdict). Exit 0: no violation; 1: violations
    found (or, with --fail-on, findings at that level or worse); 2: usage or config error; 3: input
    error. Lines audited before are not counted again.
    """
    if follow:
        _follow(files, config_path, db, geoip_db, providers, as_json, fmt=fmt, rescan=rescan, fail_on=fail_on)
        return
    inputs = expand_inputs(files)
    for note in inputs.notes:
        log.warning(note)
    _audit(
        tuple(inputs.paths),
        config_path,
        db,
        geoip_db,
        providers,
        as_json,
        command="logs",
        fmt=fmt,
        rescan=rescan,
        tolerate=inputs.found,
        progress_bytes=inputs.total_bytes,
        fail_on=fail_on,
    )


def _pipeline(
    config_path: Path | None, geoip_db: Path | None, providers: tuple[str, ...], db: str | None, *, reading: Sequence[str] = ()
) -> tuple[Pipeline, FindingStore]:
    """The pipeline (configuration, policies, GeoIP data) and the store every auditing command
    builds. When the log files `reading` are likely to be read by worker processes, their fork
    server is started first: it builds its pipeline while this process builds its own."""
    config = load_config(config_path)
    recipe = Recipe(config, tuple(providers), str(geoip_db) if geoip_db else "")
    if reading:
        from auditor import executor

        if executor.worth_workers(reading):
            executor.prestart(recipe)
    built = recipe.build(), _store(config, db)
    _freeze_once()
    return built


_frozen = False


def _say(message: str) -> None:
    """What a watcher says as it goes (files found, rotated, new rows)."""
    log.info(message)


def _recorder(store: FindingStore, pipeline: Pipeline, command: str, *, new_rows: bool = False) -> Recorder:
    """The run's Recorder; with `new_rows`, each row not shown yet is said as it is stored (the watching commands)."""
    return Recorder(store, command, geoip=pipeline.geoip, policies=pipeline.policies, on_new_rows=new_rows_printer(_say) if new_rows else None)


def _freeze_once() -> None:
    """What exists after the first pipeline is built (modules, SQLAlchemy, the cloud index) lives
    as long as the process: the collector need not walk it again on every full collection (5M
    lines: 1.65 s -> 1.55 s). Once per process: commands run again in one process (tests, a
    daemon) would otherwise freeze each run's garbage for good."""
    global _frozen  # noqa: PLW0603 - once per process, on purpose (see above)
    if not _frozen:
        _frozen = True
        gc.freeze()


def _audit(
    files: tuple[str, ...],
    config_path: Path | None,
    db: str | None,
    geoip_db: Path | None,
    providers: tuple[str, ...],
    as_json: bool,
    *,
    command: str,
    fmt: str | None = None,
    opener: Callable[[str], Any] | None = None,
    unit: str = "line",
    rescan: bool = False,
    tolerate: Collection[str] = (),
    progress_bytes: int = 0,
    fail_on: str = "violation",
) -> None:
    """What `logs` and `pcap` share: build the pipeline, audit the inputs, print the rows."""
    from auditor.runner import RunStopped, audit_logs  # the readers (and Hyperscan) only for commands that read

    pipeline, store = _pipeline(config_path, geoip_db, providers, db, reading=files if opener is None else ())
    progress = _AuditProgress(progress_bytes)
    try:
        summary = audit_logs(
            files, pipeline=pipeline, store=store, fmt=fmt, command=command, opener=opener, rescan=rescan, tolerate=tolerate, progress=progress
        )
    except RunStopped as e:  # what the inputs before the one that stopped it gave is stored: show it, then the error
        progress.close()
        _print_summary(e.summary, unit)
        if e.summary.source_ids:
            _print_rows(store.rows(e.summary.source_ids), as_json, exit_on_violation=False)
        raise
    finally:
        progress.close()
    _print_summary(summary, unit)
    _print_rows(store.rows(summary.source_ids), as_json, fail_on=fail_on)


def _print_summary(summary: RunSummary, unit: str) -> None:
    for note in summary.unread:
        log.warning(note)
    for item in summary.inputs:
        log.info(item.describe(unit))


def _follow(
    files: tuple[str, ...],
    config_path: Path | None,
    db: str | None,
    geoip_db: Path | None,
    providers: tuple[str, ...],
    as_json: bool,
    *,
    fmt: str | None,
    rescan: bool,
    fail_on: str = "violation",
) -> None:
    """`logs --follow`: follow until SIGTERM/SIGINT (exit 0) or until stdin ends (exit as `logs`), then print the rows."""
    from auditor.follow import Follower
    from auditor.scheduler import Scheduler, stop_on_signals

    pipeline, store = _pipeline(config_path, geoip_db, providers, db)
    recorder = _recorder(store, pipeline, "logs --follow", new_rows=True)
    follower = Follower(files, pipeline=pipeline, recorder=recorder, fmt=fmt, rescan=rescan, say=_say)
    scheduler = Scheduler(recorder, [follower])
    with stop_on_signals(scheduler.stop):
        summary = scheduler.run()
    for item in summary.inputs:
        log.info(item.describe())
    _print_rows(store.rows(summary.source_ids), as_json, exit_on_violation=not scheduler.stopped, fail_on=fail_on)


class _Bar:
    """A click progress bar on stderr, moved to absolute positions."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._done = 0

    def _show(self, length: int, label: str, stream: Any = None) -> None:
        self.close()
        self._bar = click.progressbar(length=length, label=label, file=stream or sys.stderr)
        self._bar.__enter__()
        self._done = 0

    def _move(self, done: int) -> None:
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class _AuditProgress(_Bar):
    """One bar over the bytes of a run's inputs, on stderr when it is a terminal and only once the
    run has taken `delay` seconds (short runs and redirected output never show one)."""

    delay = 1.0

    def __init__(self, total: int, stream: Any = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = total > 0 and self.stream.isatty()
        self._start = time.monotonic()

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if time.monotonic() - self._start < self.delay:
                return
            self._show(self.total, "reading", self.stream)
        self._move(min(done, self.total))


@cli.command()
@audit_options
@click.option("--events", "show_events", is_flag=True, help="Print each extracted connection as a JSON line instead of auditing.")
def pcap(
    files: tuple[str, ...],
    config_path: Path | None,
    db: str | None,
    geoip_db: Path | None,
    as_json: bool,
    show_events: bool,
    providers: tuple[str, ...],
    fail_on: str,
) -> None:
    """Audit pcap/pcapng captures: TLS SNI (split ClientHellos reassembled), QUIC Initial SNI,
    HTTP CONNECT and Host, SOCKS5, DNS answers naming connections without SNI. Same rows and
    exit codes as `logs`.
    """
    from auditor.sources.pcap import PcapFile

    if show_events:
        for path in files:
            capture = PcapFile.open(path)
            try:
                for event in capture.events():
                    click.echo(
                        json.dumps(
                            {
                                "ts": event.ts.isoformat().replace("+00:00", "Z"),
                                "orig_h": event.orig_h,
                                "orig_p": event.orig_p,
                                "resp_h": event.resp_h,
                                "resp_p": event.resp_p,
                                "proto": event.proto,
                                "server_name": event.server_name,
                                "name_source": event.name_source,
                            }
                        )
                    )
            finally:
                capture.close()
            _describe_skips(capture)
        return
    _audit(files, config_path, db, geoip_db, providers, as_json, command="pcap", opener=PcapFile.open, unit="packet", fail_on=fail_on)


@cli.command()
@click.option(
    "--interface",
    "-i",
    "interfaces",
    multiple=True,
    required=True,
    metavar="IF",
    help="Network interface to capture on (repeatable), e.g. eth0 or lo; `any` for all of them.",
)
@click.option(
    "--port",
    "ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="TCP/UDP ports whose outbound connections are read (repeatable; default: 443, 80, 1080, 3128, 8080).",
)
@provider_option
@json_option
@geoip_option
@db_option
@config_option
def sniff(
    interfaces: tuple[str, ...],
    ports: tuple[int, ...],
    config_path: Path | None,
    db: str | None,
    geoip_db: Path | None,
    as_json: bool,
    providers: tuple[str, ...],
) -> None:
    """Audit live traffic until stopped (Ctrl-C or SIGTERM): the same extraction as `pcap`, with a
    kernel filter so that only connection starts and DNS answers reach user space. Needs
    CAP_NET_RAW (root). New rows are reported on stderr as they appear and stored at once; the
    table for this capture is printed at the end. Exit 0 when stopped, 2 or 3 on errors.
    """
    from auditor.scheduler import Scheduler, stop_on_signals
    from auditor.sniffer import Sniffer
    from auditor.sources.live import DEFAULT_PORTS, LiveCapture

    pipeline, store = _pipeline(config_path, geoip_db, providers, db)
    capture = LiveCapture(interfaces, ports or DEFAULT_PORTS)
    recorder = _recorder(store, pipeline, "sniff", new_rows=True)
    sniffer = Sniffer(capture, pipeline=pipeline, recorder=recorder)
    scheduler = Scheduler(recorder, [sniffer])
    with stop_on_signals(scheduler.stop):
        log.info(f"listening on {capture.name}: TCP and UDP ports {', '.join(map(str, capture.ports))}, DNS answers; Ctrl-C to stop")
        scheduler.run()
    source_id = sniffer.source_id
    stats = capture.stats
    log.info(f"{capture.name}: {stats.lines} packets past the filter, {stats.events} connections named, {capture.dropped} dropped by the kernel")
    _describe_skips(capture)
    _print_rows(store.rows([source_id]), as_json, exit_on_violation=False)  # stopping a watcher is not a failure


def _describe_skips(capture: Any) -> None:
    for reason, count in capture.stats.skipped.most_common():
        where = ", ".join(capture.stats.locations.get(reason, []))
        log.info(f"{capture.name}: skipped {count} packets: {reason} ({where})")
    for reason, count in capture.stats.ignored.most_common():
        log.info(f"{capture.name}: not counted {count}: {reason}")
    if capture.stats.from_dns:
        log.info(f"{capture.name}: {dns_named(capture.stats.from_dns)}")


@cli.command()
@config_option
@db_option
@json_option
@fail_on_option
def findings(config_path: Path | None, db: str | None, as_json: bool, fail_on: str) -> None:
    """Print every row in the findings database (same rows and exit codes as `logs`)."""
    config = load_config(config_path)
    _print_rows(_store(config, db, create=False).rows(), as_json, fail_on=fail_on)


def _print_rows(rows: list[Any], as_json: bool, *, exit_on_violation: bool = True, fail_on: str = "violation") -> None:
    choice = FormatChoice.JSON if as_json else FormatChoice.TABLE
    click.echo(choice.to_format().render(rows), nl=False)
    failing = LEVELS[: LEVELS.index(fail_on) + 1]
    if exit_on_violation and any(r.verdict in failing for r in rows):
        sys.exit(EXIT_VIOLATIONS)


def _date(value: dt.datetime | None) -> dt.date | None:
    return value.date() if value else None


@cli.command()
@config_option
@db_option
@click.option(
    "--cutoff",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The date countdowns count to (default: each provider's enforcement date in the policy in force).",
)
@click.option("--as-of", "as_of", type=click.DateTime(["%Y-%m-%d"]), help="The date countdowns count from (default: today, UTC).")
@click.option("--provider", "providers", multiple=True, metavar="ID", help="Only calls to this provider (repeatable).")
@click.option("--org", "orgs", multiple=True, metavar="ORG", help="Only this organization's calls (repeatable).")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Only calls on or after this day (UTC).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Only calls on or before this day (UTC).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice([c.value for c in ReportChoice]),
    help="Format on stdout (default md), or of an -o file whose extension names none.",
)
@click.option(
    "-o",
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the report to FILE, in the format its extension names (.html, .md, .json, .csv); repeatable.",
)
@fail_on_option
def report(
    config_path: Path | None,
    db: str | None,
    cutoff: dt.datetime | None,
    as_of: dt.datetime | None,
    providers: tuple[str, ...],
    orgs: tuple[str, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    fmt: str | None,
    outputs: tuple[Path, ...],
    fail_on: str,
) -> None:
    """The compliance report, from the findings database only (no input is read again): summary
    with the countdown to the cutoff, each organization with its egresses and evidence,
    remediation, coverage. Several -o write several formats from one read; without -o, Markdown
    (or --format) on stdout.

    Exit 0: nothing at the --fail-on level; 1: findings at that level or worse; 2: usage error;
    3: the database cannot be read or a file cannot be written.
    """
    from auditor.report.model import Filters, Report
    from auditor.report.output import check_destinations, targets, write_all

    try:
        asked = targets(outputs, fmt)
    except ReportError as e:
        raise click.UsageError(str(e)) from None
    config = load_config(config_path)
    filters = Filters(providers=providers, orgs=orgs, since=_date(since), until=_date(until), cutoff=_date(cutoff), as_of=_date(as_of))
    policies = load_policies()
    packs = sorted(pack.provider for pack in policies.packs)
    for provider in providers:
        if provider not in packs:  # a misspelt filter would report nothing and pass a CI gate
            raise Failure(f"--provider {provider}: no policy pack has this id (known: {', '.join(packs)})", EXIT_USAGE)
    store = _store(config, db, create=False)
    try:
        check_destinations([path for _, path in asked if path is not None], store.files())
    except ReportError as e:
        raise Failure(str(e), EXIT_USAGE) from None
    value = Report.from_store(store, filters, policies)
    for notice in value.notices:
        log.warning(notice)
    rendered = [(choice, path, choice.to_renderer().render(value)) for choice, path in asked]
    try:
        write_all([(path, text) for _, path, text in rendered if path is not None])
    except OSError as e:
        raise Failure(f"{e.filename}: cannot write the report ({e.strerror}); no report was written; pass another -o", EXIT_INPUT) from None
    for choice, destination, text in rendered:
        if destination is None:
            try:
                click.echo(text, nl=False)
                sys.stdout.flush()
            except OSError as e:
                raise Failure(f"cannot write the report to stdout ({e.strerror})", EXIT_INPUT) from None
        else:
            log.info(f"wrote {destination} ({choice.value})")
    if value.fails(fail_on):
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
        "provider": pack.provider,
        "name": pack.name,
        "source_url": pack.source_url,
        "hosts": list(pack.hosts),
        "blocked_error_code": pack.blocked_error_code,
        "versions": [
            {
                "id": v.id,
                "label": v.label,
                "in_force_from": v.in_force_from.isoformat(),
                "enforced_from": v.enforced_from.isoformat(),
                "supported": dict(sorted(v.supported.items())),
                "excluded_subdivisions": [x.__dict__ for x in v.exclusions],
                "sources": list(v.sources),
                "notes": list(v.notes),
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


@cli.command("scan-config")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "sarif"]),
    default=None,
    help="Output: text (default), json, or sarif (SARIF 2.1.0, for code-scanning views).",
)
@json_option
@click.option("--date", "when", type=click.DateTime(["%Y-%m-%d"]), help="Judge as of this date (default: today).")
def scan_config(path: Path, fmt: str | None, as_json: bool, when: dt.datetime | None) -> None:
    """Pre-flight: flag Vercel/Next.js region config that would call a governed API from an
    unsupported region (vercel.json regions, preferredRegion, config.regions), and edge routes
    that call one without pinned regions.

    Prints `path:line: message` and `  fix: ...` per flag; --format json (or --json) the JSON
    document; --format sarif a SARIF 2.1.0 log with paths relative to PATH. Exit 0: nothing
    flagged; 1: flagged; 2: PATH is not a directory.
    """
    from auditor.preflight import PreflightError, render_json, render_text, scan  # 35 ms: only this command needs it

    if as_json and fmt not in (None, "json"):
        raise Failure(f"--json is --format json; it cannot be combined with --format {fmt}", EXIT_USAGE)
    fmt = fmt or ("json" if as_json else "text")
    try:
        result = scan(path, load_policies(), when.date() if when else None)
    except PreflightError as e:
        raise Failure(str(e), EXIT_USAGE) from e
    for skipped in result.skipped:
        log.warning(f"{skipped.path}: skipped: {skipped.reason}")
    if fmt == "sarif":
        from auditor.report.sarif import render_sarif

        click.echo(render_sarif(result), nl=False)
    else:
        click.echo(render_json(result) if fmt == "json" else render_text(result), nl=False)
    log.info(result.summary())
    if result.flags:
        sys.exit(EXIT_VIOLATIONS)


@cli.group()
def geoip() -> None:
    """GeoIP data: look addresses up through the locator chain."""


@geoip.command("lookup")
@click.argument("addresses", nargs=-1, required=True, metavar="IP_OR_REGION...")
@config_option
@geoip_option
@json_option
def geoip_lookup(addresses: tuple[str, ...], config_path: Path | None, geoip_db: Path | None, as_json: bool) -> None:
    """Locate addresses: country, registered country, network and the basis of the answer; then
    every layer's answer, which one won and why, and whether the layers disagree in a way that
    changes a shipped policy's verdict today.

    Also takes platform region references: vercel:hkg1, fly:nrt, cloudflare:hkg,
    cf-ray:230b030023ae2822-HKG, aws:ap-east-1 (and gcp, azure, oracle, alibaba, tencent).
    """
    config = load_config(config_path)
    locator = _locator(config, geoip_db)
    packs = load_policies().packs
    today = dt.datetime.now(dt.UTC).date()
    results: list[dict[str, Any]] = []
    answers = [(a, regions.locate_reference(a)) for a in addresses]
    located = dict(locator.locate_all(a for a, ref in answers if ref is None))
    for ip, ref in answers:
        loc = ref or located[ip]
        layers = locator.layers(ip) if ref is None else (ref,)
        names = locator.layer_names if ref is None else ("region-table",)
        won = locator.winner(layers)
        results.append(
            {
                "ip": ip,
                "country": loc.country_code,
                "registered_country": loc.registered_country_code,
                "region": loc.region_code,
                "network": loc.network,
                "basis": loc.basis,
                "source_version": loc.source_version,
                "cloud_provider": loc.cloud_provider,
                "cloud_region": loc.cloud_region,
                "disagreements": list(loc.disagreements),
                "layers": [
                    {
                        "layer": name,
                        "basis": layer.basis,
                        "country": layer.country_code,
                        "network": layer.network,
                        "source_version": layer.source_version,
                        "won": i == won,
                    }
                    for i, (name, layer) in enumerate(zip(names, layers, strict=True))
                ],
                "why": _why(names, layers, won) if ref is None else "a platform region reference: the region table answers",
                "locators_disagree": _deciding(packs, loc, today),
            }
        )
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for r in results:
        registered = f" (registered {r['registered_country']})" if r["registered_country"] else ""
        line = f"{r['ip']}\t{r['country'] or '-'}{registered}\t{r['network'] or '-'}\t{r['basis']}"
        if len(r["layers"]) > 1:
            each = ", ".join(f"{layer['basis']}={layer['country'] or '-'}" for layer in r["layers"])
            line += f"\tlayers: {each}"
        if r["disagreements"]:
            line += f"\t(other layers disagree: {', '.join(r['disagreements'])})"
        click.echo(line)
        width = max(len(layer["layer"]) for layer in r["layers"])
        for layer in r["layers"]:
            network = f"  {layer['network']}" if layer["network"] else ""
            mark = "  <- wins" if layer["won"] else ""
            click.echo(f"  {layer['layer']:<{width}}  {layer['country'] or '-':<2}  {layer['basis']}{network}{mark}")
        click.echo(f"  {r['why']}")
        if r["locators_disagree"]:
            by_answer: dict[str, list[str]] = {}
            for d in r["locators_disagree"]:
                by_answer.setdefault(d["answer"], []).append(f"{d['provider']} {d['verdict']} -> {d['other_verdict']}")
            for answer, changes in by_answer.items():
                click.echo(f"  locators disagree: {answer} would change the verdict ({', '.join(changes)}, policies in force today)")
        elif any(d.rpartition("=")[2] for d in r["disagreements"]):
            click.echo("  the layers disagree, but no shipped policy judges the other countries otherwise today: no verdict rests on it")


def _deciding(packs: Sequence[Pack], location: Location, when: dt.date) -> list[dict[str, str]]:
    """Each other layer's answer that would change a pack's verdict on `location` on `when`."""
    found = []
    for pack in packs if location.known else ():
        verdict, contested = pack.contested(location, when)
        for answer, other in contested:
            found.append({"answer": answer, "provider": pack.provider, "verdict": verdict.outcome.value, "other_verdict": other.outcome.value})
    return found


def _why(names: Sequence[str], layers: Sequence[Location], won: int | None) -> str:
    """Why the chain's answer is the one it is, in one sentence."""
    order = "override > cloud/edge region data > mmdb > embedded"
    if won is None:
        return f"no layer knows a country ({order}): the location is unknown, and so is the verdict"
    before = [f"{names[i]} has none ({layers[i].basis})" for i in range(won)]
    passed = f"; {', '.join(before)}" if before else ""
    return f"{names[won]} wins: the first layer that knows a country, in precedence order ({order}){passed}"


class _ProgressBars(_Bar):
    """One click progress bar per download, fed by geoip.update's progress callback."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled
        self._name = ""

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if name != self._name or done < self._done:
            self._name = name
            self._show(total or 0, f"{name:<18}")
        self._move(done)


def _verdict_changes() -> Callable[[str, str], bool]:
    """Whether moving an address from one country to another changes a verdict of a shipped
    policy in force today (for any provider); a move to or from an unknown country always does."""
    today = dt.datetime.now(dt.UTC).date()
    try:
        lists = [pack.version_at(today).supported for pack in load_policies().packs]
    except PolicyError:
        lists = []

    def changes(old: str, new: str) -> bool:
        if not lists or not old or not new:
            return old != new
        return any((old in supported) != (new in supported) for supported in lists)

    return changes


@geoip.command("update")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to keep the data (default: $XDG_DATA_HOME/region-auditor/geoip).",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice([*PROVIDERS, geoip_update_data.DBIP, "maxmind"]),
    help="Update only these sources (repeatable; default: all).",
)
@click.option("--license-key", envvar="MAXMIND_LICENSE_KEY", show_envvar=True, help="MaxMind license key: also download MaxMind's country database.")
@click.option(
    "--account-id",
    envvar="MAXMIND_ACCOUNT_ID",
    show_envvar=True,
    help="MaxMind account id (HTTP Basic authentication; without it the key is sent in the URL).",
)
@click.option(
    "--edition",
    "editions",
    multiple=True,
    type=click.Choice(geoip_update_data.MAXMIND_EDITIONS),
    help="MaxMind edition (repeatable; default: GeoLite2-Country).",
)
@click.option("--url", "urls", multiple=True, metavar="SOURCE=URL", help="Download one source from another URL (repeatable).")
@click.option("--base-url", metavar="URL", help="A mirror that serves every source under its official path.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=geoip_update_data.DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds without data before a download is abandoned.",
)
@click.option("--allow-http", is_flag=True, help="Accept plain http:// URLs (a local mirror); a redirect from https to http is still refused.")
@click.option(
    "--accept-changes",
    is_flag=True,
    help="Install feeds that change the country the locator gives somewhere in a way that changes a verdict, "
    f"or move more than {geoip_update_data.MOVE_SHARE:.0%} of their prefixes to another country "
    "(refused otherwise, with the changes listed).",
)
@click.option(
    "--geoip-db",
    "geoip_db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The country database your audits use (their --geoip-db or [geoip] database), which feeds are judged "
    "against (default: the one downloaded here, else GeoIP2/GeoLite2 in /usr/share/GeoIP or /var/lib/GeoIP).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@json_option
def geoip_update(
    directory: Path | None,
    only: tuple[str, ...],
    license_key: str | None,
    account_id: str | None,
    editions: tuple[str, ...],
    urls: tuple[str, ...],
    base_url: str | None,
    timeout: float,
    allow_http: bool,
    accept_changes: bool,
    geoip_db: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Download cloud providers' IP ranges and country databases into the local GeoIP cache.

    Downloads are https only (unless --allow-http), from each source's own hosts; MaxMind
    archives must match MaxMind's SHA-256. Each file is validated before it replaces the previous
    copy; a bad download keeps the previous copy. A feed that changes the country the whole
    locator gives (other providers' feeds, then the country database) in a way that changes a
    verdict, or moves more than 5% of its prefixes to another country, is refused and the changes
    listed, unless --accept-changes. Exit 2 for a plain http:// URL without --allow-http; exit 3
    when any source was not updated.
    """
    if (editions or "maxmind" in only) and not license_key:
        raise click.UsageError("MaxMind downloads need --license-key (or MAXMIND_LICENSE_KEY)")
    overrides: dict[str, str] = {}
    for item in urls:
        name, sep, url = item.partition("=")
        if not sep or not url:
            raise click.UsageError(f"--url takes SOURCE=URL, not {item!r}")
        overrides[name] = url
    wanted = set(only)
    try:
        sources = geoip_update_data.default_sources(
            feeds=[p for p in PROVIDERS if not wanted or p in wanted],
            dbip=not wanted or geoip_update_data.DBIP in wanted,
            license_key=(license_key or "") if not wanted or "maxmind" in wanted else "",
            account_id=account_id or "",
            editions=editions or ("GeoLite2-Country",),
            base_url=base_url or "",
            urls=overrides,
            allow_http=allow_http,
        )
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    bars = _ProgressBars(enabled=not quiet and not as_json)
    try:
        results = geoip_update_data.update(
            sources,
            directory,
            progress=bars,
            timeout=timeout,
            allow_http=allow_http,
            accept_changes=accept_changes,
            verdict_changes=_verdict_changes(),
            database=geoip_db,
        )
    finally:
        bars.close()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
    else:
        for r in results:
            click.echo(f"{r.status}\t{r.message}")
            for change in r.changes:
                click.echo(f"\t  {change}")
    not_updated = [r.source for r in results if not r.ok]
    if not_updated:
        log.error(f"not updated: {', '.join(not_updated)}")
        sys.exit(EXIT_INPUT)


def main() -> None:
    cli(prog_name="region-auditor")
