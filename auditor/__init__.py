"""region-auditor: which of our organizations call an AI provider's API from a region it does not serve."""

__version__ = "0.1.0"
