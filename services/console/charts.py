"""The console's charts: Plotly figures as HTML fragments that call the Plotly library the console serves itself
(`/static/plotly.min.js`, from the plotly wheel), never a CDN."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import plotly

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
_LAYOUT = {"height": 320, "margin": {"l": 50, "r": 20, "t": 30, "b": 40}, "template": "plotly_white"}


def _text(value: Any) -> str:
    """A data value or column name as Plotly text: Plotly renders a subset of HTML in labels (`<b>`, `<a href>`),
    so what comes from users' files is escaped and shown as written."""
    import html

    return html.escape(str(value), quote=False)


def _time(value: Any) -> Any:
    """Firestore's times (DatetimeWithNanoseconds) as ISO text, which Plotly's JSON encoder takes."""
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _html(figure: Any) -> str:
    import plotly.io as pio

    return pio.to_html(figure, include_plotlyjs=False, full_html=False, config={"displaylogo": False})


def metric_over_versions(models: list[dict[str, Any]], ledger: list[dict[str, Any]]) -> str | None:
    """Each version's held-out primary metric over its registration time, and each decision marked."""
    import plotly.graph_objects as go

    points = [m for m in models if m.get("value") is not None]
    if not points:
        return None
    # each decision a dotted line (green: a promotion), all set at once: add_vline redraws the layout per line
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": _time(e["at"]), "x1": _time(e["at"]), "y0": 0,
               "y1": 1, "line": {"width": 1, "dash": "dot",
                                 "color": "green" if e.get("event") in ("promote", "approved") else "#bbb"}}
              for e in ledger if e.get("at") is not None]
    figure = go.Figure(layout={**_LAYOUT, "title": f"{points[0]['metric']} of each version (held out)",
                               "shapes": shapes})
    figure.add_scatter(x=[_time(m["registered_at"]) for m in points], y=[m["value"] for m in points],
                       mode="lines+markers",
                       text=[f"v{m['version']} ({m['role']})" for m in points], name="held-out score")
    cv = [m for m in points if m.get("cv") and m["cv"].get("score") is not None]
    if cv:
        figure.add_scatter(x=[_time(m["registered_at"]) for m in cv], y=[m["cv"]["score"] for m in cv],
                           error_y={"array": [m["cv"].get("std") or 0 for m in cv]}, mode="markers",
                           name="cross-validated")
    return _html(figure)


def drift(validation: dict[str, Any] | None) -> str | None:
    """Each feature's drift distance against its warn and severe thresholds."""
    import plotly.graph_objects as go

    features = ((validation or {}).get("drift") or {}).get("features") or []
    if not features:
        return None
    colours = {"none": "#2e7d32", "warn": "#f9a825", "severe": "#c62828"}
    figure = go.Figure(layout={**_LAYOUT, "title": "drift distance per feature (PSI numeric, JS categorical)"})
    figure.add_bar(x=[_text(f["feature"]) for f in features], y=[f.get("score") for f in features],
                   marker_color=[colours.get(f.get("status"), "#777") for f in features],
                   text=[f.get("status") for f in features])
    return _html(figure)


def features(profile: dict[str, Any] | None, reference: dict[str, Any] | None, order: list[str]) -> list[str]:
    """A chart per profiled feature: the batch's share of rows per bin against the reference's (the champion's
    training data), in ``order`` (the drift table's), the bins of the validation report
    (``reports.feature_bins``)."""
    import plotly.graph_objects as go

    from tollgate import reports

    columns = (profile or {}).get("columns") or {}
    references = (reference or {}).get("columns") or {}
    out = []
    for name in [n for n in order if n in columns] + sorted(set(columns) - set(order)):
        labels, series = reports.feature_bins(columns[name], references.get(name))
        figure = go.Figure(layout={**_LAYOUT, "height": 260, "title": _text(name), "barmode": "group",
                                   "yaxis": {"title": "share of rows"}})
        for label, counts in series:
            figure.add_bar(x=[_text(v) for v in labels], y=reports.fractions(counts), name=label)
        out.append(_html(figure))
    return out


def windows(records: list[dict[str, Any]]) -> str | None:
    """Monitoring windows (oldest first) over time per version: error rate, p99 latency, the realised metric and
    the largest move of a feature's share of the attribution."""
    from plotly.subplots import make_subplots

    rows = [(_time(w.get("end")), int(version), v) for w in records for version, v in (w.get("versions") or {}).items()]
    if not rows:
        return None
    figure = make_subplots(rows=4, cols=1, shared_xaxes=True,
                           subplot_titles=("error rate", "p99 latency (ms)", "realised metric",
                                           "attribution drift (largest move of a feature's share)"))
    for version in sorted({version for _, version, _ in rows}):
        mine = [(end, v) for end, number, v in rows if number == version]
        x = [end for end, _ in mine]
        series = ([v.get("error_rate") for _, v in mine], [(v.get("latency_ms") or {}).get("p99") for _, v in mine],
                  [(v.get("realised") or {}).get("value") for _, v in mine],
                  [(v.get("attribution_drift") or {}).get("max_shift") for _, v in mine])
        for row, y in enumerate(series, start=1):
            figure.add_scatter(x=x, y=y, name=f"v{version}", row=row, col=1, legendgroup=str(version),
                               showlegend=row == 1)
    figure.update_layout(**{**_LAYOUT, "height": 720})
    return _html(figure)
