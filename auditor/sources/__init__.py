"""Event sources: log files (Squid, nginx/Apache combined), later packets."""
