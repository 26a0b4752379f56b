"""IP address -> Location. Knows nothing of traffic or policy."""

from geoip.interface import Location, Locator, LocatorError

__all__ = ["Location", "Locator", "LocatorError"]
