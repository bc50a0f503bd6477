"""What the run and batch reports share: templates, number formats, assets, secret scrubbing."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from tangram.fileio import atomic_path

REPORT_NAME = "report.html"
ASSETS_DIR = "report_files"  # beside report.html: plotly.min.js

_TEMPLATES = Path(__file__).with_name("templates")

# Strings shaped like API keys or bearer tokens are cut from anything a report shows (a raw LLM
# reply may echo a header; config.json is already secret-free, this is the second line of defence).
_SECRET_RE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|(?i:bearer)\s+[A-Za-z0-9._\-]{16,}|"
    r"(?i:(?:api[_-]?key|password|passphrase|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,})"
)


def scrub(text: str) -> str:
    """`text` with key-shaped substrings replaced by a marker."""
    return _SECRET_RE.sub("[secret removed]", text)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.ChainableUndefined,  # a field an older run folder lacks renders as nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=fmt_bytes, seconds=fmt_seconds, usd=fmt_usd, num=fmt_num, pct=fmt_pct,
                       scrub=scrub, tojson_pretty=lambda v: json.dumps(v, indent=2, default=str))
    env.globals["css"] = (_TEMPLATES / "report.css").read_text()
    return env


def render(template: str, out: Path, **context: Any) -> Path:
    """Render a template into `out` atomically; returns `out`."""
    html = environment().get_template(template).render(**context)
    with atomic_path(out) as tmp:
        tmp.write_text(scrub(html), encoding="utf-8")
        _readable(tmp)
    return out


def _readable(path: Path) -> None:
    """rw-r--r-- (less the umask): a report is for sharing; temp files start private."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o644 & ~umask)


def copy_asset(src: Path, folder: Path) -> str:
    """Copy `src` into `folder/report_files/` unless an identical copy is there; the relative URL."""
    dst = folder / ASSETS_DIR / src.name
    if not (dst.is_file() and dst.stat().st_size == src.stat().st_size
            and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
            _readable(tmp)
    return f"{ASSETS_DIR}/{src.name}"


def plotly_js() -> Path:
    """plotly's bundled, minified plotly.js: the viewer ships in the Python package, nothing is fetched."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"plotly.min.js is not in this plotly installation ({path})")
    return path


def now_text() -> str:
    return datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def when_text(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    except ValueError:
        return str(iso)


def fmt_bytes(n: Any) -> str:
    if not isinstance(n, int | float) or n <= 0:
        return "–" if not n else str(n)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def fmt_seconds(s: Any) -> str:
    if not isinstance(s, int | float) or math.isnan(s):
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_usd(v: Any) -> str:
    if not isinstance(v, int | float):
        return "–"
    return f"${v:.2f}" if v >= 0.01 or v == 0 else f"${v:.4f}"


def fmt_num(v: Any, digits: int = 3) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else ("yes" if v else "no")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    if isinstance(v, list | tuple):
        return ", ".join(fmt_num(x, digits) for x in v)
    return str(v)


def fmt_pct(v: Any) -> str:
    return f"±{v:.0%}" if isinstance(v, int | float) else "–"


def read_json_or_none(path: Path) -> Any:
    """A JSON artefact, or None when it is absent or unreadable (a report never fails on one file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
