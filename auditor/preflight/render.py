"""`scan-config` output as text and as the `--json` document (SARIF: auditor.report.sarif)."""

from __future__ import annotations

import json

from auditor.preflight.result import ScanResult


def render_json(result: ScanResult) -> str:
    """`--json` output, ending in a newline."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"


def render_text(result: ScanResult) -> str:
    """One `path:line: message` line per flag, then `  fix: ...`; "" when nothing is flagged."""
    out = []
    for f in result.flags:
        out.append(f"{f.path}:{f.line}: {f.message}\n")
        out.append(f"  fix: {f.fix}\n")
    return "".join(out)
