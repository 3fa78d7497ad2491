"""Exceptions raised by the scraper. The CLI turns any ScrapeError into a non-zero exit."""


class ScrapeError(Exception):
    """Base class for every failure that must stop a scrape before anything is written."""


class FetchError(ScrapeError):
    """The source could not be downloaded or read: network, HTTP status, size or content type."""


class SourceError(ScrapeError):
    """The downloaded document is not a usable KML or KMZ map export."""


class ValidationError(ScrapeError):
    """The parsed snapshot failed a check of the validation gate.

    ``details`` lists one line per offending row or value, so the caller can log them all
    while ``str(error)`` stays a one-paragraph summary.
    """

    def __init__(self, message: str, details: list[str] | None = None):
        super().__init__(message)
        self.details = list(details or [])

    def __str__(self) -> str:
        if not self.details:
            return super().__str__()
        return super().__str__() + "\n" + "\n".join(f"  {line}" for line in self.details)
