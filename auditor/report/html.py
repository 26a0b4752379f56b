"""HTML: the compliance report as one self-contained file for people (and, printed to PDF, for
auditors): inline CSS with a print stylesheet, inline SVG charts, no script and no external asset
(a Content-Security-Policy says so to the browser too). Everything that came from input (org,
host, egress, evidence, input names) goes through html.escape."""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Iterable, Sequence

from auditor.report.interface import ReportRenderer
from auditor.report.model import DayCalls, Report, day_gaps, plural, records_range

COLORS = {"violation": "#b3261e", "at_risk": "#e8710a", "unknown": "#80868b", "allowed": "#188038", "blocked": "#5f0f0a", "compliant": "#188038"}
VERDICTS = ("violation", "at_risk", "unknown", "allowed")
STATUS_LABEL = {"blocked": "blocked", "violation": "violation", "at_risk": "at risk", "unknown": "unknown egress", "compliant": "compliant"}
COUNTRIES_SHOWN = 12
"""Countries with their own bar in the chart; the rest are summed as `other`."""

CSS = """
:root { --fg: #202124; --muted: #5f6368; --line: #dadce0; --bg: #fff; --soft: #f8f9fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif; color: var(--fg); background: var(--bg);
       margin: 0 auto; max-width: 1100px; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 2px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; } .muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; } th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; } th { background: var(--soft); font-weight: 600; } td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 8px; margin: 12px 0; }
.card { border: 1px solid var(--line); border-left: 6px solid var(--muted); border-radius: 6px; padding: 8px 10px; }
.card .v { font-size: 26px; font-weight: 700; } .card .l { font-size: 12px; color: var(--muted); }
.card.blocked { border-left-color: #5f0f0a; } .card.violation { border-left-color: #b3261e; } .card.at_risk { border-left-color: #e8710a; }
.card.unknown { border-left-color: #80868b; } .card.compliant { border-left-color: #188038; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
.note { border-left: 4px solid #e8710a; background: #fef7e0; padding: 6px 10px; margin: 8px 0; }
.note.info { border-left-color: #1a73e8; background: #e8f0fe; }
.org { border: 1px solid var(--line); border-radius: 8px; padding: 4px 14px 10px; margin: 12px 0; }
pre { white-space: pre-wrap; word-break: break-all; background: var(--soft); padding: 6px 8px; margin: 2px 0 8px; font-size: 12px; border-radius: 4px; }
code { font-size: 12.5px; background: var(--soft); padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
td:first-child { white-space: nowrap; } table.evidence td:nth-child(2), table.evidence td:nth-child(3) { min-width: 11em; max-width: 16em; }
.charts { display: grid; grid-template-columns: 3fr 2fr; gap: 16px; } svg { width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
.legend span { margin-right: 12px; font-size: 12px; } .legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
@media (max-width: 800px) { .cards { grid-template-columns: repeat(3, 1fr); } .charts { grid-template-columns: 1fr; } }
@media print {
  @page { size: A4; margin: 14mm; }
  body { max-width: none; padding: 0; font-size: 10pt; }
  h2 { break-after: avoid; } h3 { break-after: avoid; }
  .org, table tr, .card, figure { break-inside: avoid; }
  .charts { grid-template-columns: 3fr 2fr; }
  pre { font-size: 8pt; }
  a { color: inherit; text-decoration: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""  # noqa: E501 - the stylesheet as it is sent


def e(value: object) -> str:
    """Text from anywhere as HTML text (quotes too: safe in attributes); control and format
    characters but newline and tab shown escaped (`\u202e`: a bidirectional override would show
    the text reversed)."""
    text = str(value)
    if not text.isprintable():
        text = "".join(c if c.isprintable() or c in "\n\t" else c.encode("unicode_escape").decode("ascii") for c in text)
    return html.escape(text, quote=True)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{COLORS.get(status, "#80868b")}">{e(STATUS_LABEL.get(status, status))}</span>'


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = (), cls: str = "") -> str:
    """A table of cells already escaped (header cells are ours)."""
    head = "".join(f"<th{' class=n' if i in numeric else ''}>{h}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table{f' class={cls}' if cls else ''}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def day_chart(days: Sequence[DayCalls], width: int = 640, height: int = 220) -> str:
    """Calls per day, stacked by verdict, as inline SVG."""
    per_day: dict[dt.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for d in days:
        per_day[d.day][d.verdict] += d.calls
    if not per_day:
        return '<p class="muted">No calls to chart.</p>'
    first, last = min(per_day), max(per_day)
    span = (last - first).days + 1
    top = max(sum(v.values()) for v in per_day.values())
    left, bottom, pad = 44, 24, 8
    plot_w, plot_h = width - left - pad, height - bottom - pad
    bar = min(plot_w / span, 48.0)
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Calls per day by verdict" id="chart-days">']
    for frac in (0, 0.5, 1):
        y = pad + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - pad}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dadce0"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{round(top * frac)}</text>')
    for day, counts in sorted(per_day.items()):
        x = left + (day - first).days * bar
        y = pad + plot_h
        for verdict in reversed(VERDICTS):  # allowed at the bottom, violations on top
            n = counts.get(verdict, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(
                f'<rect x="{x + bar * 0.1:.1f}" y="{y:.1f}" width="{max(bar * 0.8, 1):.1f}" height="{h:.1f}" fill="{COLORS[verdict]}">'
                f"<title>{e(day.isoformat())}: {n} {e(verdict)}</title></rect>"
            )
    parts.append(f'<text x="{left}" y="{height - 6}">{e(first.isoformat())}</text>')
    if last != first:
        parts.append(f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">{e(last.isoformat())}</text>')
    parts.append("</svg>")
    return "".join(parts)


def country_chart(report: Report, width: int = 420) -> str:
    """Calls by egress country, stacked by verdict, as inline SVG (horizontal bars)."""
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in report.calls_by_country:
        per[c.country or "unknown"][c.verdict] += c.calls
    if not per:
        return '<p class="muted">No calls to chart.</p>'
    ranked = sorted(per.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    if len(ranked) > COUNTRIES_SHOWN:
        other: dict[str, int] = defaultdict(int)
        for _, counts in ranked[COUNTRIES_SHOWN - 1 :]:
            for verdict, n in counts.items():
                other[verdict] += n
        ranked = [*ranked[: COUNTRIES_SHOWN - 1], ("other", other)]
    top = max(sum(c.values()) for _, c in ranked)
    row, left, pad = 22, 64, 8
    height = row * len(ranked) + pad * 2
    plot_w = width - left - pad - 40
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Calls by egress country" id="chart-countries">']
    for i, (country, counts) in enumerate(ranked):
        y = pad + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{e(country)}</text>')
        x = float(left)
        for verdict in VERDICTS:
            n = counts.get(verdict, 0)
            if not n:
                continue
            w = plot_w * n / top
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 6}" fill="{COLORS[verdict]}">'
                f"<title>{e(country)}: {n} {e(verdict)}</title></rect>"
            )
            x += w
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}">{sum(counts.values())}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _legend() -> str:
    return '<div class="legend">' + "".join(f'<span><i style="background:{COLORS[v]}"></i>{e(v)}</span>' for v in VERDICTS) + "</div>"


class HtmlReport(ReportRenderer):
    def render(self, report: Report) -> str:
        s = report.summary
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            # No script, no request: only the inline style and data: images may load.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>AI provider region compliance report, {e(report.as_of.isoformat())}</title>",
            f"<style>{CSS}</style></head><body>",
            "<h1>AI provider region compliance report</h1>",
            (
                f'<p class="muted">As of <b id="as-of">{e(report.as_of.isoformat())}</b>; generated {e(_when(report.generated_at))} UTC; '
                f"{_scope(report)}. Schema {e(report.schema)}.</p>"
            ),
        ]
        out += [f'<div class="note info notice">{e(n)}</div>' for n in report.notices]
        out.append('<h2 id="summary">Summary</h2>')
        if not s.audited:
            out.append(
                '<div class="note" id="nothing-audited"><b>Nothing was audited</b>: the database holds no run and no input. '
                "Audit logs or captures first (<code>region-auditor logs FILE...</code>, <code>region-auditor pcap FILE...</code>).</div>"
            )
        elif not report.rows:
            out.append(
                '<div class="note info" id="no-calls">No call to a governed AI provider host is recorded in the period and filters '
                "of this report.</div>"
            )
        cards = [
            ("orgs-audited", "", s.orgs_audited, "organizations audited", f"{s.calls} calls"),
            ("orgs-blocked", "blocked", s.orgs_blocked, "blocked already", f"{s.blocked_calls} calls refused"),
            ("orgs-violation", "violation", s.orgs_violation, "in violation", f"{s.violation_calls} violating calls"),
            ("orgs-at-risk", "at_risk", s.orgs_at_risk, "at risk", f"{s.at_risk_calls} calls"),
            ("orgs-unknown", "unknown", s.orgs_unknown, "unknown egress", f"{plural(s.unknown_calls, 'call')} (coverage gap)"),
            ("orgs-compliant", "compliant", s.orgs_compliant, "compliant", f"{s.allowed_calls} calls"),
        ]
        out.append(
            '<div class="cards">'
            + "".join(
                f'<div class="card {cls}"><div class="v" id="{key}">{value}</div><div class="l">{label}<br>{e(sub)}</div></div>'
                for key, cls, value, label, sub in cards
            )
            + "</div>"
        )
        out.append(
            '<p class="muted">Organizations count once, under their worst status; calls count under their own verdict '
            "(blocked calls are violations too). Unknown egress is a coverage gap, never compliant.</p>"
        )
        if s.first_seen:
            out.append(f"<p>Calls seen from {e(_when(s.first_seen))} to {e(_when(s.last_seen))} UTC.</p>")
        if s.deadlines:
            out.append(
                '<ul class="deadlines">'
                + "".join(f'<li data-provider="{e(d.provider)}" data-days-left="{d.days_left}"><b>{e(d.describe())}</b></li>' for d in s.deadlines)
                + "</ul>"
            )
        if report.rows:
            out.append(
                '<div class="charts"><figure><figcaption>Calls per day by verdict</figcaption>'
                f"{day_chart(report.calls_per_day)}{_legend()}</figure>"
                f"<figure><figcaption>Calls by egress country</figcaption>{country_chart(report)}</figure></div>"
            )
        if s.policies:
            out.append(
                "<h3>Policy packs used</h3>"
                + _table(
                    ("version", "label", "in force from", "enforced from", "calls", "source"),
                    (
                        (
                            f"<code>{e(p.version)}</code>",
                            e(p.label),
                            e(p.in_force_from or "?"),
                            e(p.enforced_from or "?"),
                            str(p.calls),
                            e(p.source_url) or "-",
                        )
                        for p in s.policies
                    ),
                    numeric=(4,),
                )
            )
        if s.data:
            out.append(
                "<h3>GeoIP and cloud-range data</h3>"
                + _table(
                    ("data", "date", "age (days)", ""),
                    (
                        (
                            e(d.name),
                            e(d.date.isoformat()),
                            str(d.age_days) if d.age_days >= 0 else "newer than the as-of date",
                            "<b>stale</b>" if d.stale else "",
                        )
                        for d in s.data
                    ),
                    numeric=(2,),
                )
            )
        out += [f'<div class="note warning">{e(w)}</div>' for w in s.warnings]

        out.append('<h2 id="orgs">Per organization</h2>')
        if not report.orgs:
            out.append('<p class="muted">No organization in this report.</p>')
        for org in report.orgs:
            out.append(f'<section class="org" data-org="{e(org.org)}" data-status="{e(org.status)}">')
            out.append(f'<h3><span class="org-name">{e(org.org)}</span> {_badge(org.status)}</h3>')
            out.append(
                f'<p><span class="org-calls">{org.calls}</span> call{"" if org.calls == 1 else "s"} '
                f'(<span class="org-blocked">{org.blocked_calls}</span> blocked) '
                f"from {e(_when(org.first_seen))} to {e(_when(org.last_seen))} UTC. Providers: {e(', '.join(org.providers))}. "
                f"Hosts: {', '.join('<code>' + e(h) + '</code>' for h in org.hosts)}.</p>"
            )
            out.append(
                _table(
                    ("egress", "country", "basis", "verdicts", "calls", "locators disagree"),
                    (
                        (
                            f"<code>{e(x.egress or '-')}</code>",
                            e(x.country or "-"),
                            e(x.basis),
                            e(", ".join(x.verdicts)),
                            str(x.calls),
                            e(x.locators_disagree or "-"),
                        )
                        for x in org.egresses
                    ),
                    numeric=(4,),
                )
            )
            out.append(
                _table(
                    ("day", "verdict", "calls", "blocked"),
                    ((e(d.day.isoformat()), e(d.verdict), str(d.calls), str(d.blocked_calls)) for d in org.calls_per_day),
                    numeric=(2, 3),
                )
            )
            for row in org.rows:
                out.append(
                    f"<p>{_badge(row.verdict)} {e(row.provider)} <code>{e(row.host)}</code> from <code>{e(row.egress or '-')}</code> "
                    f"({e(row.country or '-')}, {e(row.basis)}): {row.calls} calls, {row.blocked_calls} blocked"
                    + (f"; locators disagree: {e(row.locators_disagree)}" if row.locators_disagree else "")
                    + "</p>"
                )
                if row.evidence:
                    out.append(
                        _table(
                            ("time (UTC)", "source", "rule", "reason / redacted record"),
                            (
                                (
                                    e(_when(x.ts)),
                                    f"<code>{e(x.source)}</code>",
                                    f"<code>{e(x.rule_id)}</code>",
                                    f"{e(x.reason)}"
                                    + (f" (other layers: {e(x.disagreements)})" if x.disagreements else "")
                                    + f"<pre>{e(x.raw)}</pre>",
                                )
                                for x in row.evidence
                            ),
                            cls="evidence",
                        )
                    )
            out.append("</section>")

        out.append('<h2 id="remediation">Remediation</h2>')
        if not report.remediation:
            out.append('<p class="muted">Nothing to remediate in this report.</p>')
        for r in report.remediation:
            out.append(
                f'<div class="remedy" data-kind="{e(r.kind)}"><h3>{e(r.kind)}: {e(", ".join(r.orgs))}</h3>'
                f"<p>{e(r.action)} ({plural(r.calls, 'call')}; egress {e(', '.join(r.egresses))})</p>"
                f"<p>Setting: <code>{e(r.setting)}</code></p></div>"
            )

        c = report.coverage
        out.append('<h2 id="coverage">Coverage</h2>')
        out.append(
            f'<p><span id="runs">{c.runs}</span> runs, {len(c.inputs)} inputs; '
            f'<span id="unknown-calls">{c.unknown_calls}</span> calls with unknown egress.</p>'
        )
        if c.inputs:
            out.append(
                _table(
                    ("input", "format", "records", "lines", "calls", "malformed"),
                    (
                        (
                            f"<code>{e(i.name)}</code>",
                            e(", ".join(i.formats) + (f" ({i.compression})" if i.compression not in ("", "plain") else ""))
                            if i.recorded
                            else "not recorded",
                            e(records_range(i)),
                            str(i.lines),
                            str(i.calls),
                            ("<br>".join(f"{m.records} {e(m.reason)}" for m in i.malformed) or "0") if i.recorded else "not recorded",
                        )
                        for i in c.inputs
                    ),
                    numeric=(3, 4),
                )
            )
        if c.period_first:
            out.append(f"<p>Period {e(c.period_first.isoformat())} to {e(c.period_last.isoformat() if c.period_last else '-')}.</p>")
            gaps = day_gaps(c)
            items = [f'<li data-cause="{e(cause)}">{e(label)}: {e(", ".join(ranges))}</li>' for cause, label, ranges in gaps]
            out.append('<ul id="days-without-calls">' + "".join(items or ["<li>Every day of the period has calls.</li>"]) + "</ul>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _scope(report: Report) -> str:
    f = report.filters
    parts = []
    if f.providers:
        parts.append("providers " + e(", ".join(f.providers)))
    if f.orgs:
        parts.append("organizations " + e(", ".join(f.orgs)))
    if f.since or f.until:
        parts.append(f"calls from {e(f.since.isoformat()) if f.since else 'the first'} to {e(f.until.isoformat()) if f.until else 'the last'}")
    return "; ".join(parts) if parts else "all providers, organizations and days in the database"
