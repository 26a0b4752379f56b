"""Provider region policies as dated data, and their pure evaluation. No I/O beyond loading packs."""

from rules.policy import (
    Outcome,
    Pack,
    PolicyError,
    PolicySet,
    PolicyVersion,
    Verdict,
    load_pack,
    load_policies,
)

__all__ = [
    "Outcome",
    "Pack",
    "PolicyError",
    "PolicySet",
    "PolicyVersion",
    "Verdict",
    "load_pack",
    "load_policies",
]
