"""The bench's self-contained HTML report: one page with the tables, the figures embedded as base64 PNG, the failed
cells and the run's metadata; no external file, script or style sheet (standard library only)."""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:110em}
table{border-collapse:collapse;font-size:90%;margin:1em 0}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right;white-space:nowrap}th{background:#eee}
td:first-child{text-align:left}td.text{text-align:left;white-space:normal}
td.best{font-weight:bold;background:#e6f3e6}figure{display:inline-block;margin:.5em}figcaption{font-size:85%}
img{max-width:100%}"""


def page(tables: list[dict], legend: str, figures: dict[str, list[tuple[str, Path]]],
         traces: dict[str, list[tuple[str, Path]]], failures: list[dict], metadata: dict,
         checks: list[dict] | None = None) -> str:
    """The HTML page.

    Args:
        tables: :func:`probnets_app.bench.report.tables`.
        legend: What the tables' marks mean.
        figures: ``(caption, PNG path)`` pairs per data set.
        traces: The trace plots shown per data set, as ``(caption, PNG path)`` pairs.
        failures: ``data_set``, ``method``, ``split`` and ``error`` of every failed cell.
        metadata: :func:`probnets_app.bench.report.run_metadata`.
        checks: :func:`probnets_app.bench.references.check` (``None``: no such section).
    """
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>probnets bench</title>',
             f"<style>{_STYLE}</style></head><body>", "<h1>probnets bench</h1>", f"<p>{escape(legend)}</p>"]
    for table in tables:
        data_set = table["data_set"]
        parts.append(f"<h2>{escape(data_set)} ({escape(table['task'])})</h2>")
        parts.append(_table(table))
        if table["errors"]:
            parts.append("<p>Failures: " + "; ".join(f"{escape(m)}: {escape(e[:200])}" for m, e in table["errors"])
                         + "</p>")
        parts += [_figure(caption, path) for caption, path in figures.get(data_set, [])]
        if traces.get(data_set):
            parts.append("<h3>MCMC trace and rank plots (the cells of largest R-hat)</h3>")
            parts += [_figure(caption, path) for caption, path in traces[data_set]]
    if checks is not None:
        parts.append(_references(checks))
    parts.append("<h2>Failed cells</h2>")
    if failures:
        parts.append("<table><tr><th>data set</th><th>method</th><th>split</th><th>error</th></tr>"
                     + "".join(f"<tr><td>{escape(str(f['data_set']))}</td><td>{escape(str(f['method']))}</td>"
                               f"<td>{escape(str(f['split']))}</td><td class=\"text\">"
                               f"{escape(str(f['error']))}</td></tr>" for f in failures) + "</table>")
    else:
        parts.append("<p>None.</p>")
    parts += ["<h2>Run</h2>", _metadata(metadata), "</body></html>"]
    return "\n".join(parts) + "\n"


def _references(checks: list[dict]) -> str:
    from probnets_app.bench import references

    head = "".join(f"<th>{escape(c)}</th>" for c in references.HEADER)
    rows = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in row) + "</tr>"
                   for row in references.table(checks))
    return ("<h2>Literature reference check</h2>" f"<p>{escape(references.target_status(checks))}</p>"
            f"<p>Rule: {escape(references.RULE)}.</p><table><tr>{head}</tr>{rows}</table><ul>"
            + "".join(f"<li>{escape(note)}</li>" for note in references.notes(checks)) + "</ul>")


def _table(table: dict) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in ("method", "splits", "failed", *table["columns"]))
    body = []
    for row in table["rows"]:
        cells = [f"<td>{escape(row['method'])}</td><td>{row['splits']}</td><td>{row['failed']}</td>"]
        for text, mark in row["cells"]:
            if mark == "best":
                cells.append(f'<td class="best">{escape(text)}</td>')
            else:
                cells.append(f"<td>{escape(text)}{' &dagger;' if mark == 'tie' else ''}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>" + "".join(body) + "</table>"


def _figure(caption: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def _metadata(metadata: dict) -> str:
    items = [f"cells: {metadata['cells']} ({metadata['finished']} finished without error)",
             "seed of split 0 (split k uses seed + k): " + (", ".join(map(str, metadata["seed"])) or "unknown"),
             "threads per cell: " + (", ".join(map(str, metadata["threads"])) or "unknown")]
    if metadata["load_average"] is not None:
        low, high = metadata["load_average"]
        items.append(f"machine load (1-minute load average when a cell started): {low:.2f} to {high:.2f}")
    for versions in metadata["versions"]:
        items.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    budgets = "".join(f"<tr><td>{escape(method)}</td><td>{escape(str(b['family']))}</td><td>{escape(str(b['budget']))}"
                      f"</td><td class=\"text\">{escape(json.dumps(b['settings']))}</td></tr>"
                      for method, b in metadata["budgets"].items())
    return ("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
            "<table><tr><th>data set / method</th><th>family</th><th>budget (gradient evaluations)</th>"
            "<th>settings</th></tr>"
            + budgets + "</table>")
