"""Reports rendered from results.json."""

from slimkit.report.markdown import render_markdown

__all__ = ["render_markdown"]
