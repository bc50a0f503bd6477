"""Logging: rich console output, a log file per run, and secrets redacted everywhere."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from config import TangramConfig
from tangram.settings import secret_values

console = Console(stderr=True)


class RedactSecrets(logging.Filter):
    """Replaces known secret strings in every record, whichever logger emitted it."""

    def __init__(self, secrets: Sequence[str]):
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def setup_logging(level: str = "INFO", secrets: Sequence[str] = ()) -> None:
    """Console logging for the CLI; TANGRAM_LOG_LEVEL (via config) sets the level."""
    root = logging.getLogger()
    numeric = logging.getLevelName(level.upper())
    numeric = numeric if isinstance(numeric, int) else logging.INFO
    root.setLevel(numeric)
    for handler in list(root.handlers):
        if getattr(handler, "_tangram", False):
            root.removeHandler(handler)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    handler._tangram = True  # type: ignore[attr-defined]
    handler.setLevel(numeric)
    handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    # third-party chatter stays at WARNING unless the user asks for DEBUG
    for noisy in ("paramiko", "PIL", "matplotlib", "urllib3", "httpx", "openai", "ultralytics"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)


@contextmanager
def attach_run_log(path: Path, config: TangramConfig) -> Iterator[None]:
    """Also write the log into the run folder while the run lasts (always at DEBUG detail)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secret_values(config)))
    root = logging.getLogger()
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.close()
