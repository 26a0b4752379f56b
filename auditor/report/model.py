"""The compliance report's read model: the store, read once, as one frozen `Report` value.

`Report.from_store(store, filters, policies)` makes every query the report needs; the renderers
(one file per format, auditor.report.interface.ReportChoice) take the value and nothing else, so
any report can be made again later, in any format, from the same database. `to_data(report)` is
the JSON form (schema: auditor/report/schema/report-1.json); the CSV's columns are its `rows`' keys.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from auditor.redact import redact
from auditor.store import VERDICT_ORDER, DayCount, FindingStore, InputRecord, Row, RuleCount, RunRecord, Scope, row_key
from rules.policy import Outcome, PolicyError, PolicySet

SCHEMA = "region-auditor/report@1"
"""The `schema` of every JSON report this version writes (auditor/report/schema/report-1.json)."""
STALE_DAYS = 30
"""GeoIP and cloud-range data older than this (against --as-of) is warned about."""
LEVELS = ("violation", "at_risk", "unknown")
"""What `--fail-on` takes, worst first: a level fails on itself and everything before it."""
STATUSES = ("blocked", "violation", "at_risk", "unknown", "compliant")
"""An organization's status, worst first: `blocked` when the provider refused any of its calls."""


@dataclass(frozen=True)
class Filters:
    """What the report covers and the dates it is computed against."""

    providers: tuple[str, ...] = ()
    """--provider: only these providers, () for all."""
    orgs: tuple[str, ...] = ()
    """--org: only these organizations, () for all."""
    since: dt.date | None = None
    """--since: only calls on or after this day (UTC)."""
    until: dt.date | None = None
    """--until: only calls on or before this day (UTC)."""
    cutoff: dt.date | None = None
    """--cutoff: the date countdowns count to; None for each provider's enforcement date in force."""
    as_of: dt.date | None = None
    """--as-of: the date countdowns count from; None for today (UTC)."""

    def scope(self) -> Scope:
        return Scope(self.providers, self.orgs, self.since, self.until)


@dataclass(frozen=True)
class Deadline:
    """A provider's cutoff and the countdown to it."""

    provider: str
    """Pack id (`openai`)."""
    name: str
    """The pack's human name (`OpenAI API`)."""
    cutoff: dt.date
    """The day the provider blocks (or blocked) unsupported locations."""
    days_left: int
    """Days from --as-of to the cutoff; negative once it has passed (days since it, negated)."""
    basis: str
    """`--cutoff`, or the policy version whose enforcement date it is (`openai@v188`)."""

    def describe(self) -> str:
        """`OpenAI API: cutoff 2024-07-09, 12 days left` (or `... 880 days ago`, `... today`)."""
        if self.days_left > 0:
            when = f"{self.days_left} day{'s' if self.days_left != 1 else ''} left"
        elif self.days_left < 0:
            when = f"{-self.days_left} day{'s' if self.days_left != -1 else ''} ago"
        else:
            when = "today"
        return f"{self.name}: cutoff {self.cutoff.isoformat()}, {when} ({self.basis})"


@dataclass(frozen=True)
class DataSource:
    """A GeoIP or cloud-range data set the runs located egresses with."""

    name: str
    """As the run recorded it (`mmdb:GeoLite2-Country`, `cloud:aws:cloudip-db`)."""
    date: dt.date
    """The data's date as the run recorded it."""
    age_days: int
    """Days from the data's date to --as-of."""
    stale: bool
    """Older than STALE_DAYS: on --as-of (the newest date of the set), or when a run located with it
    (runs_stale)."""
    runs: int
    """Runs that located with this data."""
    runs_stale: int
    """Of those, runs that started more than STALE_DAYS after the data's date: their verdicts rest on stale data."""


@dataclass(frozen=True)
class PolicyUse:
    """A policy pack version that judged calls in the report."""

    provider: str
    """Pack id."""
    version: str
    """`openai@v188`."""
    label: str
    """The version's description (`188-entry list`)."""
    in_force_from: dt.date | None
    """From this day the version describes the provider's policy; null for a version this region-auditor does not ship."""
    enforced_from: dt.date | None
    """From this day the provider blocks; null as in_force_from."""
    source_url: str
    """The provider's page for the list."""
    calls: int
    """Calls this version judged."""


@dataclass(frozen=True)
class RuleUse:
    """Calls judged by one rule."""

    provider: str
    """Pack id."""
    policy_version: str
    """`openai@v188`."""
    rule_id: str
    """`openai@v188:not-listed:HK`, `...:provider-blocked`, `...:no-location`."""
    verdict: str
    """What the rule decided."""
    calls: int
    """Calls it judged."""


@dataclass(frozen=True)
class Summary:
    """The report's first section."""

    audited: bool
    """False when the database holds no audited input at all."""
    orgs_audited: int
    """Organizations with calls in the report (`unattributed` counts as one)."""
    orgs_blocked: int
    """Organizations whose calls the provider already refused (HTTP 403, its blocked-region error)."""
    orgs_violation: int
    """In violation, not (yet) seen blocked."""
    orgs_at_risk: int
    """Calling from an unsupported place before the cutoff: will be blocked on it."""
    orgs_compliant: int
    """All calls from supported places."""
    orgs_unknown: int
    """No egress established for some of their calls (and nothing worse): a coverage gap, never compliant."""
    calls: int
    """Calls to governed hosts in the report."""
    blocked_calls: int
    """Calls the provider already refused (counted in violation_calls too)."""
    violation_calls: int
    """Calls from unsupported places on or after the enforcement date."""
    at_risk_calls: int
    """Calls from unsupported places before it."""
    unknown_calls: int
    """Calls whose egress or location was not established."""
    allowed_calls: int
    """Calls from supported places."""
    first_seen: dt.datetime | None
    """The first call in the report, null when there is none."""
    last_seen: dt.datetime | None
    """The last call, null when there is none."""
    deadlines: tuple[Deadline, ...]
    """One per provider in the report (or filtered on, or every pack when there are no calls)."""
    policies: tuple[PolicyUse, ...]
    """The policy versions that judged the calls."""
    data: tuple[DataSource, ...]
    """GeoIP and cloud-range data sets named by the runs, newest date of each."""
    warnings: tuple[str, ...]
    """Stale data, runs that did not finish."""


@dataclass(frozen=True)
class EvidenceItem:
    """One sampled call, as stored (the raw record redacted when it was stored)."""

    source: str
    """Where it was read: `file:line`, `capture:packet`, a drain entry."""
    ts: dt.datetime
    """When the call was made."""
    orig_h: str
    """The client address as recorded (Zeek id.orig_h), "" when none."""
    egress_basis: str
    """How the egress was established (`site:hk-office`, `event`, `source:<path>`, `none`)."""
    rule_id: str
    """The rule that judged it."""
    reason: str
    """One sentence for a human."""
    raw: str
    """The record, redacted before it was stored (keys, tokens, passwords)."""
    disagreements: str
    """Other locator layers' answers (`mmdb:...=CN`), "" when none."""


@dataclass(frozen=True)
class ReportRow:
    """Calls of one org to one host of one provider from one egress with one verdict: a CSV row."""

    org: str
    """Organization, `unattributed` when no rule matched."""
    provider: str
    """Pack id."""
    host: str
    """The governed host called."""
    egress: str
    """The egress address, else the platform region (`vercel:hkg1`), "" when none was established."""
    country: str
    """ISO 3166-1 code of the egress, "" when not established."""
    basis: str
    """Where the country came from (`cloud:aws:ap-east-1`, `edge:vercel:hkg1`, `no-egress`)."""
    verdict: str
    """`violation`, `at_risk`, `unknown` or `allowed`."""
    calls: int
    """Calls (of the period)."""
    blocked_calls: int
    """Of them, calls the provider refused with its blocked-region error."""
    first_seen: dt.datetime
    """The first call."""
    last_seen: dt.datetime
    """The last call."""
    locators_disagree: str
    """Other locator layers' answers that would change the verdict, "" when none."""
    evidence: tuple[EvidenceItem, ...] = ()
    """Up to 5 sampled calls, earliest first: an input's first calls of each day (in input order) are sampled; empty in `rows` (the CSV)."""


@dataclass(frozen=True)
class DayCalls:
    """Calls on one day with one verdict."""

    day: dt.date
    """UTC day."""
    verdict: str
    """The calls' verdict."""
    calls: int
    """Calls that day with that verdict."""
    blocked_calls: int
    """Of them, calls the provider refused."""


@dataclass(frozen=True)
class Egress:
    """One egress an org's calls left from."""

    egress: str
    """Address, platform region (`vercel:hkg1`), or "" when not established."""
    country: str
    """ISO 3166-1 code, "" when unknown."""
    basis: str
    """Where the country came from."""
    verdicts: tuple[str, ...]
    """The verdicts of its calls, worst first."""
    calls: int
    """Calls that left from it."""
    locators_disagree: str
    """Other locator layers' answers that would change a verdict, "" when none."""


@dataclass(frozen=True)
class OrgReport:
    """Everything about one organization."""

    org: str
    """Organization name as configured (or `unattributed`)."""
    status: str
    """One of STATUSES."""
    calls: int
    """Its calls."""
    blocked_calls: int
    """Of them, refused by the provider."""
    first_seen: dt.datetime
    """Its first call."""
    last_seen: dt.datetime
    """Its last call."""
    providers: tuple[str, ...]
    """Providers it called."""
    hosts: tuple[str, ...]
    """Governed hosts it called."""
    egresses: tuple[Egress, ...]
    """Where its calls left from."""
    calls_per_day: tuple[DayCalls, ...]
    """Its calls per UTC day and verdict."""
    rows: tuple[ReportRow, ...]
    """Worst verdict first, each with up to 5 evidence events."""


@dataclass(frozen=True)
class Remediation:
    """What to change for one kind of finding."""

    kind: str
    """`vercel-region`, `cloud-region`, `egress-route` or `unknown-egress`."""
    orgs: tuple[str, ...]
    """Organizations with findings of this kind and place."""
    egresses: tuple[str, ...]
    """Their egresses (`-` for none)."""
    providers: tuple[str, ...]
    """Providers concerned."""
    calls: int
    """Calls concerned."""
    action: str
    """What to do, in one sentence."""
    setting: str
    """The exact setting to change."""


@dataclass(frozen=True)
class Malformed:
    """Malformed records of one reason."""

    reason: str
    """Why records were skipped (`squid: too few fields`)."""
    records: int
    """How many."""


@dataclass(frozen=True)
class InputCoverage:
    """One audited input."""

    name: str
    """The input as recorded (absolute path, `<stdin>`, an interface)."""
    formats: tuple[str, ...]
    """Formats it was read as; () when not recorded (a database from before reads were recorded)."""
    compression: str
    """`plain`, `gzip`, ...; "" when not recorded."""
    first_record: dt.datetime | None
    """When its first record read was written (all records, calls or not); None when not recorded (a
    database from before record times were, or an input none of whose records gives a time)."""
    last_record: dt.datetime | None
    """When its last record read was written."""
    first_call: dt.datetime | None
    """Its first governed call in scope."""
    last_call: dt.datetime | None
    """Its last governed call in scope."""
    lines: int
    """Lines (packets) audited: its checkpoint."""
    calls: int
    """Its governed calls in scope."""
    malformed: tuple[Malformed, ...]
    """Malformed records by reason, most frequent first, over the runs that recorded them."""
    recorded: bool
    """False when how it was read (format, malformed counts) was not recorded."""


@dataclass(frozen=True)
class DayRange:
    """Consecutive days without calls, for one cause."""

    first: dt.date
    """First day without calls."""
    last: dt.date
    """Last day without calls."""
    days: int
    """How many days."""
    cause: str
    """`no_input`: no audited input has records of these days (logs missing: nothing was audited);
    `no_calls`: inputs have records of them, none of them a governed call in scope; `not_recorded`:
    no input read since record times are recorded has records of them, and an input read before
    may have."""


@dataclass(frozen=True)
class Coverage:
    """The report's last section: what was audited, and what was not."""

    runs: int
    """Runs recorded in the database."""
    inputs: tuple[InputCoverage, ...]
    """Every audited input."""
    period_first: dt.date | None
    """The first day of the period covered: --since, else the first day of any input's records or
    calls."""
    period_last: dt.date | None
    """The last day: --until, else the last day of any input's records or calls."""
    days_without_calls: tuple[DayRange, ...]
    """Days of the period on which no governed call in scope was recorded, by cause: no input, or
    input without calls."""
    unknown_calls: int
    """Calls whose egress was not established."""


@dataclass(frozen=True)
class CountryCalls:
    """Calls from one egress country with one verdict."""

    country: str
    """ISO 3166-1 code of the egress, "" when not established."""
    verdict: str
    """The calls' verdict."""
    calls: int
    """Calls from that country with that verdict."""


@dataclass(frozen=True)
class Report:
    """The whole compliance report."""

    schema: str
    """`region-auditor/report@1`: the schema version."""
    generated_at: dt.datetime
    """When the report was made."""
    as_of: dt.date
    """The day countdowns count from (--as-of, else the day it was made)."""
    filters: Filters
    """What was asked for."""
    notices: tuple[str, ...]
    """What the filters named that the database does not hold (an unknown org or provider)."""
    summary: Summary
    """Section 1."""
    orgs: tuple[OrgReport, ...]
    """Section 2: organizations, worst status first."""
    remediation: tuple[Remediation, ...]
    """Section 3: what to change, per kind of finding."""
    coverage: Coverage
    """Section 4: what was audited."""
    calls_per_day: tuple[DayCalls, ...]
    """All orgs, for the chart."""
    calls_by_country: tuple[CountryCalls, ...]
    """Calls per egress country and verdict, most first (the chart)."""
    rules: tuple[RuleUse, ...]
    """Calls per policy rule."""
    rows: tuple[ReportRow, ...]
    """Every row (without evidence): the CSV."""

    @classmethod
    def from_store(cls, store: FindingStore, filters: Filters, policies: PolicySet, *, now: dt.datetime | None = None) -> Report:
        with store.reading():  # one state of the store, while another run may be recording
            return _build(store, filters, policies, now or dt.datetime.now(dt.UTC))

    def fails(self, level: str) -> bool:
        """True when any call in the report is at `level` (one of LEVELS) or worse."""
        worse = LEVELS[: LEVELS.index(level) + 1]
        return any(r.verdict in worse for r in self.rows)


_FIELDS: dict[type, tuple[str, ...]] = {}
"""Field names of each dataclass to_data met (dataclasses.fields() on every value was a third of a large report's JSON)."""


def to_data(value: Any) -> Any:
    """A report value as JSON-ready data: dataclasses as objects, dates in ISO 8601 (times in UTC, `Z`)."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return value
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(kind):
        names = _FIELDS.setdefault(kind, tuple(f.name for f in dataclasses.fields(kind)))
    if names is not None:
        return {name: to_data(getattr(value, name)) for name in names}
    if isinstance(value, dt.datetime):
        naive = value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
        return naive.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [to_data(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    return value


def plural(count: int, word: str) -> str:
    """`1 call`, `2 calls`."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def status_of(rows: Iterable[ReportRow]) -> str:
    """The worst status of an org's rows."""
    rows = list(rows)
    if any(r.blocked_calls for r in rows):
        return "blocked"
    verdicts = {r.verdict for r in rows}
    for verdict in ("violation", "at_risk", "unknown"):
        if verdict in verdicts:
            return verdict
    return "compliant"


def _build(store: FindingStore, filters: Filters, policies: PolicySet, now: dt.datetime) -> Report:
    as_of = filters.as_of or now.astimezone(dt.UTC).date()
    filters = dataclasses.replace(filters, as_of=as_of)
    scope = filters.scope()
    runs = store.runs()
    inputs = store.inputs(scope)
    stored = store.scoped_rows(scope)
    evidence = store.evidence_by_row(scope)
    rows = [_report_row(r, ()) for r in stored]
    with_evidence = [_report_row(r, tuple(_evidence_item(e) for e in evidence.get(row_key(r), ()))) for r in stored]
    activity = store.activity(scope)
    days = activity.days
    rules = _rules(activity.rules)
    # What the filters name and the store lacks (one more scan of the store, so only when filtered)
    known_orgs, known_providers = store.known_values() if filters.orgs or filters.providers else (set(), set())
    notices = _notices(filters, policies, known_orgs, known_providers)
    orgs = _orgs(with_evidence, days)
    providers = sorted({r.provider for r in rows} | set(filters.providers) or {p.provider for p in policies.packs})
    deadlines = _deadlines(providers, filters, policies, as_of)
    uses = _policy_uses(rules, policies)
    data = _data_sources(runs, as_of)
    newest = {d.name: d for d in data}  # data is sorted by name and date
    stale = [f"{d.name} ({d.date.isoformat()}, {d.age_days} days)" for d in newest.values() if d.age_days > STALE_DAYS]
    used_stale = [f"{d.name}@{d.date.isoformat()} by {plural(d.runs_stale, 'run')}" for d in data if d.runs_stale]
    warnings = tuple(
        (
            [
                (
                    f"GeoIP and cloud-range data older than {STALE_DAYS} days on {as_of.isoformat()}: {', '.join(stale)}; "
                    "update it (region-auditor geoip update) and audit again"
                )
            ]
            if stale
            else []
        )
        + (
            [
                (
                    f"Calls located with data already older than {STALE_DAYS} days when the run used it: {', '.join(used_stale)}; "
                    "after region-auditor geoip update, audit those inputs again (logs --rescan)"
                )
            ]
            if used_stale
            else []
        )
        + [
            f"run {r.id} ({r.command}, started {r.started_at:%Y-%m-%d %H:%M} UTC) has not recorded its end: it is still running, "
            "or stopped before the end of its inputs"
            for r in runs
            if r.finished_at is None
        ]
    )
    by_verdict: dict[str, int] = defaultdict(int)
    for r in rows:
        by_verdict[r.verdict] += r.calls
    statuses = [o.status for o in orgs]
    summary = Summary(
        audited=bool(runs or inputs),
        orgs_audited=len(orgs),
        orgs_blocked=statuses.count("blocked"),
        orgs_violation=statuses.count("violation"),
        orgs_at_risk=statuses.count("at_risk"),
        orgs_compliant=statuses.count("compliant"),
        orgs_unknown=statuses.count("unknown"),
        calls=sum(r.calls for r in rows),
        blocked_calls=sum(r.blocked_calls for r in rows),
        violation_calls=by_verdict["violation"],
        at_risk_calls=by_verdict["at_risk"],
        unknown_calls=by_verdict["unknown"],
        allowed_calls=by_verdict["allowed"],
        first_seen=min((r.first_seen for r in rows), default=None),
        last_seen=max((r.last_seen for r in rows), default=None),
        deadlines=deadlines,
        policies=uses,
        data=data,
        warnings=warnings,
    )
    overall: dict[tuple[dt.date, str], list[int]] = defaultdict(lambda: [0, 0])
    for d in days:
        overall[(d.day, d.verdict)][0] += d.calls
        overall[(d.day, d.verdict)][1] += d.blocked_calls
    countries: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        countries[(r.country, r.verdict)] += r.calls
    return Report(
        schema=SCHEMA,
        generated_at=now,
        as_of=as_of,
        filters=filters,
        notices=notices,
        summary=summary,
        orgs=orgs,
        remediation=_remediation(rows, policies, as_of),
        coverage=_coverage(runs, inputs, rows, days, filters),
        calls_per_day=tuple(
            DayCalls(day, verdict, c, b) for (day, verdict), (c, b) in sorted(overall.items(), key=lambda kv: (kv[0][0], _rank(kv[0][1])))
        ),
        calls_by_country=tuple(CountryCalls(c, v, n) for (c, v), n in sorted(countries.items(), key=lambda kv: (-kv[1], kv[0][0], _rank(kv[0][1])))),
        rules=rules,
        rows=tuple(rows),
    )


def _rules(counts: Iterable[RuleCount]) -> tuple[RuleUse, ...]:
    return tuple(
        RuleUse(c.provider, c.policy_version, c.rule_id, c.verdict, c.calls)
        for c in sorted(counts, key=lambda c: (c.provider, c.policy_version, c.rule_id, c.verdict))
    )


_RANKS = {verdict: n for n, verdict in enumerate(VERDICT_ORDER)}


def _rank(verdict: str) -> int:
    return _RANKS.get(verdict, len(VERDICT_ORDER))


def _report_row(row: Row, evidence: tuple[EvidenceItem, ...]) -> ReportRow:
    return ReportRow(
        row.org,
        row.provider,
        row.host,
        row.egress_ip,
        row.country,
        row.basis,
        row.verdict,
        row.calls,
        row.blocked_calls,
        row.first_seen,
        row.last_seen,
        row.locators_disagree,
        evidence,
    )


def _evidence_item(e: Any) -> EvidenceItem:
    # Redacted when stored, not again here: 60 us a record, 1 s of a 1M-observation report.
    return EvidenceItem(e.location, e.ts, e.orig_h, e.egress_basis, e.rule_id, e.reason, e.raw, e.disagreements)


def _notices(filters: Filters, policies: PolicySet, orgs: set[str], providers: set[str]) -> tuple[str, ...]:
    found = []
    packs = {p.provider for p in policies.packs}
    for provider in filters.providers:
        if provider not in packs:
            found.append(f"--provider {provider}: no policy pack has this id")
        elif provider not in providers:
            found.append(f"--provider {provider}: the database holds no call to this provider")
    # The orgs held are not named: a report scoped to one organization is handed to it.
    found.extend(
        f"--org {org}: the database holds no call of this organization (region-auditor findings lists those it holds)"
        for org in filters.orgs
        if org not in orgs
    )
    if filters.since and filters.until and filters.since > filters.until:
        found.append(f"--since {filters.since.isoformat()} is after --until {filters.until.isoformat()}: the period is empty")
    return tuple(found)


def _orgs(rows: list[ReportRow], days: Iterable[DayCount]) -> tuple[OrgReport, ...]:
    by_org: dict[str, list[ReportRow]] = defaultdict(list)
    for r in rows:
        by_org[r.org].append(r)
    per_day: dict[str, list[DayCount]] = defaultdict(list)  # one DayCount an (org, day, verdict)
    for d in days:
        per_day[d.org].append(d)
    result = []
    for org, mine in by_org.items():
        egresses: dict[tuple[str, str, str], list[Any]] = {}
        for r in mine:
            e = egresses.setdefault((r.egress, r.country, r.basis), [[], 0, ""])
            if r.verdict not in e[0]:
                e[0].append(r.verdict)
            e[1] += r.calls
            e[2] = e[2] or r.locators_disagree
        result.append(
            OrgReport(
                org=org,
                status=status_of(mine),
                calls=sum(r.calls for r in mine),
                blocked_calls=sum(r.blocked_calls for r in mine),
                first_seen=min(r.first_seen for r in mine),
                last_seen=max(r.last_seen for r in mine),
                providers=tuple(sorted({r.provider for r in mine})),
                hosts=tuple(sorted({r.host for r in mine})),
                egresses=tuple(Egress(k[0], k[1], k[2], tuple(sorted(v[0], key=_rank)), v[1], v[2]) for k, v in egresses.items()),
                calls_per_day=tuple(
                    DayCalls(d.day, d.verdict, d.calls, d.blocked_calls)
                    for d in sorted(per_day[org], key=lambda d: (d.day, _RANKS.get(d.verdict, 9)))
                ),
                rows=tuple(mine),
            )
        )
    return tuple(sorted(result, key=lambda o: (STATUSES.index(o.status), o.org)))


def _deadlines(providers: Iterable[str], filters: Filters, policies: PolicySet, as_of: dt.date) -> tuple[Deadline, ...]:
    found = []
    for provider in providers:
        try:
            pack = policies.get(provider)
        except PolicyError:
            continue
        version = pack.version_at(as_of)
        cutoff = filters.cutoff or version.enforced_from
        basis = "--cutoff" if filters.cutoff else f"{pack.provider}@{version.id}"
        found.append(Deadline(pack.provider, pack.name, cutoff, (cutoff - as_of).days, basis))
    return tuple(found)


def _policy_uses(rules: Iterable[Any], policies: PolicySet) -> tuple[PolicyUse, ...]:
    calls: dict[str, int] = defaultdict(int)
    for r in rules:
        calls[r.policy_version] += r.calls
    found = []
    for tag, n in sorted(calls.items()):
        provider, _, version_id = tag.partition("@")
        try:
            pack = policies.get(provider)
            version = pack.version(version_id)
            found.append(PolicyUse(provider, tag, version.label, version.in_force_from, version.enforced_from, pack.source_url, n))
        except PolicyError:  # a pack or version this region-auditor does not ship: named as stored
            found.append(PolicyUse(provider, tag, "", None, None, "", n))
    return tuple(found)


_DATED = re.compile(r"([A-Za-z0-9_.:/+-]+)@(\d{4}-\d{2}-\d{2})")


def _data_sources(runs: Iterable[RunRecord], as_of: dt.date) -> tuple[DataSource, ...]:
    """Each dated data set named in the runs' locator descriptions (`mmdb:GeoLite2-Country@2026-11-20`),
    at every date a run used, by name and date: what it located with, and whether it was stale then."""
    used: dict[tuple[str, dt.date], list[int]] = defaultdict(lambda: [0, 0])
    for run in runs:
        for name, date in set(_DATED.findall(run.geoip or "")):
            try:
                when = dt.date.fromisoformat(date)
            except ValueError:  # not a date region-auditor writes: not a data set's
                continue
            used[(name, when)][0] += 1
            used[(name, when)][1] += (run.started_at.date() - when).days > STALE_DAYS
    newest = dict(sorted(used))  # by name and date: each name's newest date last
    return tuple(
        DataSource(name, when, (as_of - when).days, bool(stale) or (newest[name] == when and (as_of - when).days > STALE_DAYS), count, stale)
        for (name, when), (count, stale) in sorted(used.items())
    )


def _remediation(rows: list[ReportRow], policies: PolicySet, as_of: dt.date) -> tuple[Remediation, ...]:
    groups: dict[tuple[str, str], list[ReportRow]] = defaultdict(list)
    for r in rows:
        if r.verdict == "allowed":
            continue
        if r.verdict == "unknown":
            kind, place = "unknown-egress", r.basis.split(":", 1)[0]
        elif r.basis.startswith("edge:vercel:"):
            kind, place = "vercel-region", r.basis.rsplit(":", 1)[1]
        elif r.basis.startswith("cloud:"):
            kind, place = "cloud-region", r.basis.removeprefix("cloud:")
        else:
            kind, place = "egress-route", r.country
        groups[(kind, place)].append(r)
    found = []
    for (kind, place), mine in sorted(groups.items()):
        providers = tuple(sorted({r.provider for r in mine}))
        names = _names(policies, providers)
        blocked = sum(r.blocked_calls for r in mine)
        already = f" ({blocked} calls already refused by the provider)" if blocked else ""
        if kind == "vercel-region":
            nearest = _nearest_vercel_region(place, providers, policies, as_of)
            action = (
                f"Run the functions that call {names} outside Vercel region {place}{already}: pin them to {nearest}, "
                f"the nearest region {names} {'serves' if len(providers) == 1 else 'all serve'}."
            )
            setting = f'vercel.json: "regions": ["{nearest}"]; or in the route: export const preferredRegion = "{nearest}"'
        elif kind == "cloud-region":
            cloud, _, region = place.partition(":")
            others = _cloud_alternatives(cloud, region, providers, policies, as_of)
            action = (
                f"Move the workload (or the NAT gateway its calls leave from) out of {cloud} region {region}{already} "
                f"to a region in a country {names} {'serves' if len(providers) == 1 else 'all serve'}"
                + (f", such as {', '.join(others)}." if others else ".")
            )
            setting = f"the deployment's region: {cloud} {region} -> {others[0].split(' ')[0] if others else 'a region in a supported country'}"
        elif kind == "egress-route":
            action = f"Route calls to {names} through an egress in a supported country (a proxy or NAT gateway there){already}."
            setting = (
                f"the proxy's or NAT gateway's public address (egress now in {place or 'an unknown country'}); then "
                "[[site]] egress_ip / [[source]] egress_ip in the auditor config"
            )
        else:
            action = "Tell the auditor where these calls leave to the internet, so that they can be judged: until then they are a coverage gap."
            setting = (
                '[[site]] networks = ["<client network>"]; egress_ip = "<public address>" (NAT), or [[source]] path = "<log>"; '
                'egress_ip = "<proxy public address>" in the auditor config'
            )
        found.append(
            Remediation(
                kind=kind,
                orgs=tuple(sorted({r.org for r in mine})),
                egresses=tuple(sorted({r.egress or "-" for r in mine})),
                providers=providers,
                calls=sum(r.calls for r in mine),
                action=action,
                setting=setting,
            )
        )
    order = ("vercel-region", "cloud-region", "egress-route", "unknown-egress")
    return tuple(sorted(found, key=lambda x: order.index(x.kind)))


def _names(policies: PolicySet, providers: tuple[str, ...]) -> str:
    names = []
    for p in providers:
        try:
            names.append(policies.get(p).name)
        except PolicyError:
            names.append(p)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _cloud_alternatives(cloud: str, region: str, providers: tuple[str, ...], policies: PolicySet, as_of: dt.date) -> list[str]:
    """Up to 3 regions of the same cloud in countries every provider serves (`ap-southeast-1 (SG)`),
    those in the same area of the cloud's naming first (`ap-`, `asia-`, `europe-`)."""
    from geoip import regions

    packs = [p for p in policies.packs if p.provider in providers]
    if not packs:
        return []
    served = [
        r
        for r in regions.regions_of("cloud", cloud)
        if r.code != region and all(p.check(r.country_code, as_of).outcome is Outcome.ALLOWED for p in packs)
    ]
    area = region.split("-", 1)[0]
    ranked = sorted(served, key=lambda r: (r.code.split("-", 1)[0] != area, r.code))
    return [f"{r.code} ({r.country_code})" for r in ranked[:3]]


def _nearest_vercel_region(code: str, providers: tuple[str, ...], policies: PolicySet, as_of: dt.date) -> str:
    """The nearest Vercel region every provider serves, as `scan-config` names it."""
    from auditor.preflight.judge import Judge  # the same choice scan-config makes; 35 ms, only when a Vercel finding needs it

    known = tuple(p for p in providers if p in {pack.provider for pack in policies.packs})
    return Judge(policies, as_of).nearest_supported(code, known or tuple(p.provider for p in policies.packs))


def _coverage(runs: list[RunRecord], inputs: list[InputRecord], rows: list[ReportRow], days: Iterable[Any], filters: Filters) -> Coverage:
    with_calls = sorted({d.day for d in days})
    dated: list[tuple[dt.date, dt.date]] = []
    """Stretches of days some input has records of, from every input's spans."""
    ends: list[dt.date] = [*with_calls[:1], *with_calls[-1:]]
    for i in inputs:
        for start, stop in i.spans:
            dated.append((start.date(), stop.date()))
        if i.first_seen is not None and i.last_seen is not None and not i.spans:
            ends += [i.first_seen.date(), i.last_seen.date()]
    ends += [d for span in dated for d in span]
    undated = any(i.lines and not i.spans for i in inputs)
    """Some input's record times were not recorded (read before they were): a day none of the
    others has records of may still be one of its."""
    first = filters.since or min(ends, default=None)
    last = filters.until or max(ends, default=None)
    gaps: list[DayRange] = []
    if first and last and first <= last:
        outside, covered = ("not_recorded" if undated else "no_input"), _merged(dated)
        for a, b in _without(first, last, with_calls):
            for x, y, inside in _split(a, b, covered):
                gaps.append(DayRange(x, y, (y - x).days + 1, "no_calls" if inside else outside))
    return Coverage(
        runs=len(runs),
        inputs=tuple(
            InputCoverage(
                i.name,
                i.formats,
                i.compression,
                min(i.spans[0][0], i.first_seen or i.spans[0][0]) if i.spans else None,  # a call is a record too
                max(i.spans[-1][1], i.last_seen or i.spans[-1][1]) if i.spans else None,
                i.first_seen,
                i.last_seen,
                i.lines,
                i.calls,
                tuple(Malformed(redact(reason), n) for reason, n in i.malformed),
                i.recorded,
            )
            for i in inputs
        ),
        period_first=first,
        period_last=last,
        days_without_calls=tuple(gaps),
        unknown_calls=sum(r.calls for r in rows if r.verdict == "unknown"),
    )


GAP_CAUSES = {
    "no_input": "Days no audited input has records of (nothing was audited)",
    "no_calls": "Days with records but no governed call",
    "not_recorded": "Days without calls that inputs read before record times were recorded may cover",
}
"""What the report says of days without calls, by DayRange.cause, in this order."""


def day_gaps(coverage: Coverage) -> list[tuple[str, str, list[str]]]:
    """The days of the period without calls, as the text renderers say them: (cause, what they are,
    the ranges as `2024-07-01` or `2024-07-01 to 2024-07-03`) for each cause that has any."""
    said = []
    for cause, label in GAP_CAUSES.items():
        ranges = [g.first.isoformat() + (f" to {g.last.isoformat()}" if g.days > 1 else "") for g in coverage.days_without_calls if g.cause == cause]
        if ranges:
            said.append((cause, label, ranges))
    return said


def records_range(item: InputCoverage) -> str:
    """When an input's records were written, as the text renderers say it."""
    if item.first_record is None or item.last_record is None:
        return "not recorded"
    first, last = (t.replace(tzinfo=None, microsecond=0).isoformat(" ") for t in (item.first_record, item.last_record))  # years < 1000 too
    return first if first == last else f"{first} to {last}"


def _without(first: dt.date, last: dt.date, days: list[dt.date]) -> Iterator[tuple[dt.date, dt.date]]:
    """The stretches of days from `first` to `last` (both included) that are not in `days` (sorted)."""
    start = first
    for day in days:
        if day < start:
            continue
        if day > last:
            break
        if day > start:
            yield start, day - dt.timedelta(days=1)
        if day == dt.date.max:
            return
        start = day + dt.timedelta(days=1)
    if start <= last:
        yield start, last


def _merged(spans: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    """Stretches of days, sorted, the overlapping and adjacent ones joined."""
    out: list[tuple[dt.date, dt.date]] = []
    for a, b in sorted(spans):
        if out and (a - out[-1][1]).days <= 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _split(first: dt.date, last: dt.date, inside: list[tuple[dt.date, dt.date]]) -> Iterator[tuple[dt.date, dt.date, bool]]:
    """The days from `first` to `last` cut where they enter and leave the stretches `inside`
    (sorted, apart): (from, to, whether in one of them)."""
    at = first
    for a, b in inside:
        if b < at:
            continue
        if a > last:
            break
        if a > at:
            yield at, a - dt.timedelta(days=1), False
            at = a
        stop = min(b, last)
        yield at, stop, True
        if stop == last:
            return
        at = stop + dt.timedelta(days=1)
    yield at, last, False
