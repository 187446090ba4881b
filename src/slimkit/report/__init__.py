"""Reports rendered from results.json: report.md, a self-contained report.html, comparisons."""

from pathlib import Path
from typing import Any

from slimkit._io import write_text
from slimkit.report.html import render_comparison, render_html
from slimkit.report.markdown import render_markdown


def write_reports(run_dir: Path, results: dict[str, Any]) -> None:
    """(Re)write ``report.md`` and ``report.html`` in ``run_dir`` from ``results``."""
    write_text(run_dir / "report.md", render_markdown(results))
    write_text(run_dir / "report.html", render_html(results))


__all__ = ["render_comparison", "render_html", "render_markdown", "write_reports"]
