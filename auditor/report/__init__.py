"""Output formats for aggregated rows."""
