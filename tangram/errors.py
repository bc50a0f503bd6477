"""Errors a user can act on. The CLI prints them as one line and exits with code 2."""


class TangramError(Exception):
    """A problem with the user's input, settings or environment, explained in one line."""


class StageFailed(TangramError):
    """A stage could not produce its output for a reason a person understands (no parallax...)."""
