"""Markdown: the compliance report for tickets and pull requests (GitHub-flavoured tables)."""

from __future__ import annotations

import datetime as dt
import re

from auditor.report.interface import ReportRenderer
from auditor.report.model import Report, day_gaps, plural, records_range

STATUS_LABEL = {"blocked": "BLOCKED", "violation": "violation", "at_risk": "at risk", "unknown": "unknown (coverage gap)", "compliant": "compliant"}
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(text: object) -> str:
    """Text from input as inert Markdown in a table cell or a line: markup characters escaped,
    `<`/`&` as entities (no HTML), control characters (newlines too) shown escaped."""
    value = str(text)
    if not value.isprintable():
        value = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _SPECIAL.sub(r"\\\1", value)


def code_block(text: str) -> str:
    """`text` in a fence longer than any run of backticks in it; control characters but newlines escaped."""
    shown = "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii") for c in text)
    longest = max((len(m) for m in re.findall(r"`+", shown)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{shown}\n{fence}"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


class MarkdownReport(ReportRenderer):
    def render(self, report: Report) -> str:
        s = report.summary
        out = ["# AI provider region compliance report", ""]
        out.append(f"As of {report.as_of.isoformat()}; generated {_when(report.generated_at)} UTC; {_scope(report)}.")
        out.append("")
        for notice in report.notices:
            out += [f"> **Note:** {md(notice)}", ""]
        out += ["## Summary", ""]
        if not s.audited:
            out += [
                (
                    "**Nothing was audited**: the database holds no run and no input. Audit logs or captures first "
                    "(`region-auditor logs FILE...`, `region-auditor pcap FILE...`)."
                ),
                "",
            ]
        elif not report.rows:
            out += ["No call to a governed AI provider host is recorded in the period and filters of this report.", ""]
        out += _table(
            ("", "organizations", "calls"),
            [
                ("audited", str(s.orgs_audited), str(s.calls)),
                ("**blocked** (the provider refused calls)", str(s.orgs_blocked), str(s.blocked_calls)),
                ("**in violation**", str(s.orgs_violation), str(s.violation_calls)),
                ("**at risk** (will be blocked on the cutoff)", str(s.orgs_at_risk), str(s.at_risk_calls)),
                ("unknown egress (coverage gap, not compliant)", str(s.orgs_unknown), str(s.unknown_calls)),
                ("compliant", str(s.orgs_compliant), str(s.allowed_calls)),
            ],
        )
        out.append("Organizations count once, under their worst status; calls count under their own verdict (blocked calls are violations too).")
        out.append("")
        if s.first_seen:
            out += [f"Calls seen from {_when(s.first_seen)} to {_when(s.last_seen)} UTC.", ""]
        for d in s.deadlines:
            out.append(f"- {md(d.describe())}")
        if s.deadlines:
            out.append("")
        if s.policies:
            out += ["Policy packs used:", ""]
            out += [
                f"- {code_span(p.version)} {md(p.label)} (in force from {p.in_force_from or '?'}, enforced from {p.enforced_from or '?'}): "
                f"{p.calls} calls; source: {md(p.source_url) or '-'}"
                for p in s.policies
            ]
            out.append("")
        if s.data:
            out += ["GeoIP and cloud-range data:", ""]
            out += [
                f"- {md(d.name)}: {d.date.isoformat()} ("
                + (f"{plural(d.age_days, 'day')} old" if d.age_days >= 0 else "newer than the as-of date")
                + (", **stale**" if d.stale else "")
                + ")"
                for d in s.data
            ]
            out.append("")
        for warning in s.warnings:
            out += [f"> **Warning:** {md(warning)}", ""]

        out += ["## Per organization", ""]
        if not report.orgs:
            out += ["No organization in this report.", ""]
        for org in report.orgs:
            out += [f"### {md(org.org)}: {STATUS_LABEL[org.status]}", ""]
            out.append(
                f"{plural(org.calls, 'call')} ({org.blocked_calls} blocked) from {_when(org.first_seen)} to {_when(org.last_seen)} UTC; "
                f"providers: {', '.join(md(p) for p in org.providers)}; hosts: {', '.join(md(h) for h in org.hosts)}."
            )
            out.append("")
            out += _table(
                ("egress", "country", "basis", "verdicts", "calls", "locators disagree"),
                [
                    (md(e.egress or "-"), md(e.country or "-"), md(e.basis), md(", ".join(e.verdicts)), str(e.calls), md(e.locators_disagree or "-"))
                    for e in org.egresses
                ],
            )
            out += _table(
                ("day", "verdict", "calls", "blocked"),
                [(d.day.isoformat(), md(d.verdict), str(d.calls), str(d.blocked_calls)) for d in org.calls_per_day],
            )
            for row in org.rows:
                out.append(
                    f"**{md(row.verdict)}**: {md(row.provider)} {code_span(row.host)} from {md(row.egress or '-')} "
                    f"({md(row.country or '-')}, {md(row.basis)}): {row.calls} calls, {row.blocked_calls} blocked"
                )
                out.append("")
                for e in row.evidence:
                    out.append(f"- {_when(e.ts)} at {code_span(e.source)}: rule {code_span(e.rule_id)}: {md(e.reason)}")
                    out.append("")
                    out.append("  " + code_block(e.raw).replace("\n", "\n  "))
                    out.append("")
        out += ["## Remediation", ""]
        if not report.remediation:
            out += ["Nothing to remediate in this report.", ""]
        for r in report.remediation:
            out += [
                f"### {r.kind}: {', '.join(md(o) for o in r.orgs)}",
                "",
                f"{md(r.action)} ({plural(r.calls, 'call')}; egress {', '.join(md(e) for e in r.egresses)})",
                "",
                f"Setting: {code_span(r.setting)}",
                "",
            ]
        out += ["## Coverage", ""]
        c = report.coverage
        out.append(f"{plural(c.runs, 'run')}; {plural(len(c.inputs), 'input')}; {plural(c.unknown_calls, 'call')} with unknown egress.")
        out.append("")
        if c.inputs:
            out += _table(
                ("input", "format", "records", "lines", "calls", "malformed"),
                [
                    (
                        md(i.name),
                        md(", ".join(i.formats) + (f" ({i.compression})" if i.compression not in ("", "plain") else ""))
                        if i.recorded
                        else "not recorded",
                        records_range(i),
                        str(i.lines),
                        str(i.calls),
                        ("; ".join(f"{m.records} {md(m.reason)}" for m in i.malformed) or "0") if i.recorded else "not recorded",
                    )
                    for i in c.inputs
                ],
            )
        if c.period_first:
            out += [f"Period {c.period_first.isoformat()} to {c.period_last.isoformat() if c.period_last else '-'}.", ""]
            gaps = day_gaps(c)
            out += [f"- {label}: {', '.join(ranges)}" for _, label, ranges in gaps] or ["- Every day of the period has calls."]
            out.append("")
        return "\n".join(out).rstrip("\n") + "\n"


def code_span(text: object) -> str:
    """`text` as an inline code span (a backtick inside it makes the fence longer; control characters shown escaped)."""
    shown = str(text)
    if not shown.isprintable():
        shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in shown)
    longest = max((len(m) for m in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def _scope(report: Report) -> str:
    f = report.filters
    parts = []
    if f.providers:
        parts.append("providers " + ", ".join(md(p) for p in f.providers))
    if f.orgs:
        parts.append("organizations " + ", ".join(md(o) for o in f.orgs))
    if f.since or f.until:
        parts.append(f"calls from {f.since.isoformat() if f.since else 'the first'} to {f.until.isoformat() if f.until else 'the last'}")
    return "; ".join(parts) if parts else "all providers, organizations and days in the database"
