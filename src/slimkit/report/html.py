"""``report.html``: one self-contained page (CSS and plots inline) that opens offline.

It shows what ``report.md`` shows — summary, the steps table, warnings, notes, environment —
plus the figures: latency and size per step, bytes by layer type, and for a search the Pareto
front and the per-layer sensitivity. ``render_comparison`` puts several runs side by side.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from slimkit.report.markdown import HEADERS, fastest_line, human_bytes, step_rows
from slimkit.report.plots import PLOTS, render_plots

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.3rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f5f8}
.summary{font-size:1.1rem;background:#f3f8f3;padding:.8rem;border-radius:6px}
.warn{background:#fff4e5;padding:.6rem;border-radius:6px}
figure{margin:1rem 0}figcaption{font-size:.85rem;color:#555}
img{max-width:100%}
"""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(name: str, png: bytes) -> str:
    caption = PLOTS.help(name) or name
    data = base64.b64encode(png).decode()
    return (
        f'<figure data-plot="{name}"><img alt="{html.escape(name)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


# Marks each figure with the size it decoded to, so a headless browser can prove it rendered.
_SELF_CHECK = (
    "<script>addEventListener('load',()=>{for(const i of document.images)"
    "i.dataset.rendered=i.naturalWidth+'x'+i.naturalHeight})</script>"
)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}{_SELF_CHECK}</body></html>\n"
    )


def render_html(results: dict[str, Any]) -> str:
    """The whole report for one run, from its results.json."""
    summary, env = results["summary"], results["environment"]
    parts = [
        f"<h1>slimkit run: {html.escape(results['recipe']['name'])}</h1>",
        f'<p class="summary"><b>{html.escape(summary["final"])}</b> vs '
        f"<b>{html.escape(summary['baseline'])}</b>: {summary['speedup']:.2f}x faster, "
        f"{summary['compression']:.2f}x smaller, "
        f"accuracy {-summary['accuracy_drop']:+.2f} points.</p>",
        *(f'<p class="summary">{html.escape(line)}</p>' for line in fastest_line(results)[1:]),
    ]
    if results.get("warnings"):
        items = "".join(f"<li>{html.escape(w)}</li>" for w in results["warnings"])
        parts.append(f'<h2>Warnings</h2><ul class="warn">{items}</ul>')
    parts += ["<h2>Steps</h2>", _table(HEADERS, step_rows(results))]
    search = results.get("search")
    if search:
        parts += ["<h2>Search</h2>", _search(search)]
    plots = render_plots(results)
    if plots:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(name, png) for name, png in plots.items()]
    notes = [[s["name"], n] for s in results["steps"] for n in s["notes"]]
    if notes:
        parts += ["<h2>Notes</h2>", _table(["step", "note"], notes)]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    parts += [
        "<h2>Environment</h2>",
        _table(
            ["what", "value"],
            [
                ["CPU", f"{env['cpu']} ({env['cpu_count']} logical cores)"],
                ["threads", str(env["threads"])],
                ["Python", f"{env['python']} on {env['platform']}"],
                ["versions", versions],
            ],
        ),
    ]
    return _page(f"slimkit: {results['recipe']['name']}", "".join(parts))


def _search(search: dict[str, Any]) -> str:
    rows = [
        [
            str(t["number"]),
            t["state"],
            ", ".join(f"{k}={v}" for k, v in t["params"].items()),
            f"{t['accuracy']:.2f}" if t.get("accuracy") is not None else "-",
            _latency(t),
            human_bytes(t["size_bytes"]) if t.get("size_bytes") else "-",
            "yes" if t.get("pareto") else "",
            "; ".join(t.get("notes", [])),
        ]
        for t in search["trials"]
    ]
    headers = ["trial", "state", "params", "acc %", "p50 ms", "size", "Pareto", "notes"]
    return f"<p>{html.escape(search.get('message', ''))}</p>" + _table(headers, rows)


def _latency(trial: dict[str, Any]) -> str:
    """A trial's p50, and what the search timed where the finalists were timed again."""
    if not trial.get("latency_ms"):
        return "-"
    again = trial.get("timed_in_search")
    first = f" (in search {again['latency_ms']:.4g})" if again else ""
    return f"{trial['latency_ms']:.4g}{first}"


def render_comparison(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """Several runs side by side: each one's final step against its own baseline."""
    rows = []
    for label, results in runs:
        base, final, summary = results["steps"][0], results["steps"][-1], results["summary"]
        rows.append(
            [
                label,
                results["recipe"]["name"],
                final["name"],
                final["runtime"],
                f"{base['accuracy']:.2f}",
                f"{final['accuracy']:.2f}",
                f"{final['latency_ms']['p50']:.4g}",
                f"{summary['speedup']:.2f}x",
                human_bytes(final["size_bytes"]),
                f"{summary['compression']:.2f}x",
            ]
        )
    headers = [
        "run",
        "recipe",
        "final step",
        "runtime",
        "baseline acc %",
        "final acc %",
        "p50 ms",
        "speedup",
        "size",
        "smaller",
    ]
    body = "<h1>slimkit: runs compared</h1>" + _table(headers, rows)
    for label, results in runs:
        body += f"<h2>{html.escape(label)}</h2>" + _table(HEADERS, step_rows(results))
    return _page("slimkit: runs compared", body)
