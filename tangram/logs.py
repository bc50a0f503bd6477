"""Logging: rich console output, a log file per run, and secrets redacted everywhere."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from config import TangramConfig
from tangram.settings import secret_values

console = Console(stderr=True)
_level_lock = threading.Lock()
_runs_at_debug: list[int] = []  # [root level before the first run, one entry per run holding it at DEBUG]


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
def attach_run_log(path: Path, config: TangramConfig, this_thread_only: bool = False) -> Iterator[None]:
    """Also write the log into the run folder while the run lasts (always at DEBUG detail). With
    `this_thread_only` (several runs in one process, `tangram batch`) the file takes the records of
    the calling thread only; the root logger stays at DEBUG until the last run ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secret_values(config)))
    if this_thread_only:
        thread = threading.get_ident()
        handler.addFilter(lambda record: record.thread == thread)
    root = logging.getLogger()
    with _level_lock:
        if not _runs_at_debug:
            _runs_at_debug.append(root.level)  # the level before the first run, restored after the last
        _runs_at_debug.append(threading.get_ident())
        root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        with _level_lock:
            _runs_at_debug.pop()
            if len(_runs_at_debug) == 1:
                root.setLevel(_runs_at_debug.pop())
        handler.close()
