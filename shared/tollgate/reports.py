"""HTML reports for people: a summary first, then the details, with plots embedded (one file).

Pure: report dicts (as written to ``reports/<run_id>/*.json``) in, an HTML string out.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import jinja2

_ENV = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_COLOURS = {"none": "#2e7d32", "warn": "#ef6c00", "severe": "#c62828", "valid": "#2e7d32", "rejected": "#c62828"}
_TOP_CATEGORIES = 12

_VALIDATION = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Validation {{ r.run_id }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; } td, th { border-bottom: 1px solid #ddd;
padding: .25rem .6rem; text-align: left; vertical-align: top; } th { background: #f5f5f5; }
.badge { color: #fff; padding: .1rem .5rem; border-radius: .3rem; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; } code { font-size: .9em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: 1rem; }
figure { margin: 0; } figcaption { font-size: .9em; }
</style></head><body>
<h1>Validation of <code>{{ r.source.object if r.source else r.run_id }}</code></h1>
<p>Dataset <b>{{ r.dataset }}</b> · run <code>{{ r.run_id }}</code></p>
<h2>Summary</h2>
<p><span class="badge" style="background:{{ colour(r.status) }}">{{ r.status }}</span>
{% if r.reason %} <b>{{ r.reason }}</b>:{% endif %} {{ r.message }}</p>
<p>Rows in: {{ r.rows_in }} · kept: {{ r.rows_out }} · dropped: {{ r.rows_dropped }}</p>
<p>Drift: <span class="badge" style="background:{{ colour(r.drift.verdict) }}">{{ r.drift.verdict }}</span>
{{ r.drift.message }}</p>
{% if r.checks %}
<h2>Checks that found something</h2>
<table><tr><th>check</th><th>action</th><th class="num">rows</th><th>what</th><th>examples</th></tr>
{% for c in r.checks %}
<tr><td><code>{{ c.name }}</code></td><td>{{ c.action }}</td><td class="num">{{ c.failed_rows }}</td>
<td>{{ c.message }}</td><td>{% for e in c.examples[:3] %}<code>{{ e }}</code><br>{% endfor %}</td></tr>
{% endfor %}</table>
{% else %}<p>Every check passed.</p>{% endif %}
{% if r.drift.features %}
<h2>Drift against the champion's training data</h2>
<p>Tests: Kolmogorov–Smirnov (numeric) and chi-square (categorical); q = Benjamini–Hochberg adjusted
p-value (FDR {{ r.drift.fdr }}); distance: PSI (numeric) or Jensen–Shannon (categorical);
thresholds warn/severe: PSI {{ r.drift.thresholds.psi }}, JS {{ r.drift.thresholds.js }}.</p>
<table><tr><th>feature</th><th>test</th><th class="num">statistic</th><th class="num">p</th><th class="num">q</th>
<th>distance</th><th class="num">score</th><th>status</th><th>notes</th></tr>
{% for f in r.drift.features %}
<tr><td>{{ f.feature }}</td><td>{{ f.test }}</td><td class="num">{{ "%.4g"|format(f.statistic) }}</td>
<td class="num">{{ "%.3g"|format(f.p_value) }}</td><td class="num">{{ "%.3g"|format(f.q_value) }}</td>
<td>{{ f.distance }}</td><td class="num">{{ "%.4f"|format(f.score) }}</td>
<td><span class="badge" style="background:{{ colour(f.status) }}">{{ f.status }}</span></td>
<td>{% if f.new_categories %}new: {{ f.new_categories|join(", ") }} ({{ f.new_category_rows }} rows){% endif %}
{% if f.wasserstein is defined %}Wasserstein/IQR {{ "%.3f"|format(f.wasserstein) }}{% endif %}</td></tr>
{% endfor %}</table>
{% endif %}
{% if plots %}
<h2>Features: reference (champion's training data) vs this batch</h2>
<div class="grid">{% for name, png in plots %}
<figure><img alt="{{ name }}" width="100%" src="data:image/png;base64,{{ png }}"><figcaption>{{ name }}</figcaption>
</figure>{% endfor %}</div>
{% endif %}
</body></html>
""")


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend, imported when a plot is first drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fractions(counts: list[float]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]


def _feature_plot(name: str, batch: dict[str, Any], reference: dict[str, Any] | None) -> str:
    fig, ax = _pyplot().subplots(figsize=(4.6, 2.6))
    if batch["kind"] == "numeric":
        edges = batch.get("edges") or []
        labels = ([f"< {edges[0]:.3g}"] + [f"{a:.3g}–{b:.3g}" for a, b in zip(edges, edges[1:])]
                  + [f"≥ {edges[-1]:.3g}"]) if edges else ["all"]
        series = [("batch", batch.get("counts") or [batch.get("count", 0)])]
        if reference and reference.get("edges") == edges:
            series.insert(0, ("reference", reference["counts"]))
    else:
        keys = sorted(batch["counts"], key=lambda k: -batch["counts"][k])[:_TOP_CATEGORIES]
        if reference:
            keys = sorted(set(keys) | set(sorted(reference["counts"], key=lambda k: -reference["counts"][k])
                                          [:_TOP_CATEGORIES]), key=lambda k: -batch["counts"].get(k, 0))
        labels = [k[:18] for k in keys]
        series = [("batch", [batch["counts"].get(k, 0) for k in keys])]
        if reference:
            series.insert(0, ("reference", [reference["counts"].get(k, 0) for k in keys]))
    width = 0.8 / len(series)
    for i, (label, counts) in enumerate(series):
        ax.bar([x + i * width for x in range(len(labels))], _fractions(counts), width, label=label)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels, rotation=60,
                  ha="right", fontsize=7)
    ax.set_ylabel("share of rows", fontsize=8)
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7)
    return _png(fig)


def validation_html(report: dict[str, Any], reference: dict[str, Any] | None = None) -> str:
    """The person's view of ``validation.json``: summary, failed checks, drift table, per-feature plots."""
    profile = report.get("profile") or {}
    ref_columns = (reference or {}).get("columns", {})
    plots = [(name, _feature_plot(name, entry, ref_columns.get(name)))
             for name, entry in (profile.get("columns") or {}).items() if entry.get("count")]
    report = {"rows_dropped": report.get("rows_in", 0) - report.get("rows_out", 0), **report}
    report.setdefault("drift", {"verdict": "none", "message": "", "features": []})
    return _VALIDATION.render(r=report, plots=plots, colour=lambda s: _COLOURS.get(s, "#555"))


_EVALUATION = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation {{ r.run_id }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; } td, th { border-bottom: 1px solid #ddd;
padding: .25rem .6rem; text-align: left; } th { background: #f5f5f5; }
.num { text-align: right; font-variant-numeric: tabular-nums; } code { font-size: .9em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(26rem, 1fr)); gap: 1rem; }
</style></head><body>
<h1>Evaluation of challenger v{{ r.challenger.version }}{% if r.champion %} against champion
v{{ r.champion.version }}{% endif %}</h1>
<p>Dataset <b>{{ r.dataset }}</b> · run <code>{{ r.run_id }}</code> · {{ r.holdout_rows }} held-out rows of the
new batch (never trained on), the same rows for both models.</p>
<h2>Summary</h2>
{% if r.difference %}{% set d = r.difference %}
<p>Primary metric <b>{{ r.metric }}</b>: challenger {{ "%.4f"|format(d.challenger) }}, champion
{{ "%.4f"|format(d.champion) }}; improvement {{ "%+.4f"|format(d.improvement) }},
{{ "%.0f"|format(d.confidence * 100) }}% paired-bootstrap interval [{{ "%+.4f"|format(d.low) }},
{{ "%+.4f"|format(d.high) }}] over {{ d.resamples }} resamples
({{ "the challenger is better" if d.low > 0 else "no proven improvement" }}).</p>
{% else %}<p>No champion yet: the challenger's {{ r.metric }} is
{{ "%.4f"|format(r.challenger.metrics[r.metric]) }}.</p>{% endif %}
<h2>Metrics</h2>
<table><tr><th>metric</th><th class="num">challenger</th><th class="num">champion</th></tr>
{% for name, value in r.challenger.metrics.items() %}
<tr><td>{{ name }}{% if name == r.metric %} (primary){% endif %}</td><td class="num">{{ "%.4f"|format(value) }}</td>
<td class="num">{{ "%.4f"|format(r.champion.metrics[name]) if r.champion and name in r.champion.metrics
else "–" }}</td></tr>
{% endfor %}</table>
{% if r.slices %}
<h2>Slices ({{ r.metric }})</h2>
<table><tr><th>column</th><th>slice</th><th class="num">rows</th><th class="num">challenger</th>
<th class="num">champion</th></tr>
{% for s in r.slices %}
<tr><td>{{ s.column }}</td><td>{{ s.slice }}</td><td class="num">{{ s.rows }}</td>
<td class="num">{{ "%.4f"|format(s.challenger) if s.challenger is not none else "n/a" }}</td>
<td class="num">{{ "%.4f"|format(s.champion) if s.champion is not none else "–" }}</td></tr>
{% endfor %}</table>
{% endif %}
<h2>Plots</h2>
<div class="grid">{% for name, png in plots %}
<figure><img alt="{{ name }}" width="100%" src="data:image/png;base64,{{ png }}"><figcaption>{{ name }}</figcaption>
</figure>{% endfor %}</div>
</body></html>
""")


def _evaluation_plots(y: Any, challenger: Any, champion: Any | None, task: str) -> list[tuple[str, str]]:
    import numpy as np
    from sklearn import metrics as skm

    plt = _pyplot()
    models = [("challenger", challenger)] + ([("champion", champion)] if champion is not None else [])
    plots = []
    if task == "regression":
        fig, ax = plt.subplots(figsize=(5, 4))
        for label, scored in models:
            ax.scatter(y, scored.predictions, s=6, alpha=0.5, label=label)
        low, high = float(np.min(y)), float(np.max(y))
        ax.plot([low, high], [low, high], color="#555", linewidth=1)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.legend(fontsize=8)
        plots.append(("predicted vs actual", _png(fig)))
        fig, ax = plt.subplots(figsize=(5, 4))
        for label, scored in models:
            ax.hist(scored.predictions - y, bins=40, alpha=0.5, label=label)
        ax.set_xlabel("residual (predicted − actual)")
        ax.legend(fontsize=8)
        plots.append(("residuals", _png(fig)))
        return plots
    for label, scored in models:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        skm.ConfusionMatrixDisplay.from_predictions(y, scored.predictions, labels=scored.classes, ax=ax,
                                                    colorbar=False)
        plots.append((f"confusion matrix ({label})", _png(fig)))
    if all(s.proba is not None and len(s.classes) == 2 for _, s in models):
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for label, scored in models:
            skm.RocCurveDisplay.from_predictions(y == scored.classes[1], scored.proba[:, 1], name=label, ax=ax)
        plots.append(("ROC", _png(fig)))
    return plots


def evaluation_html(report: dict[str, Any], y: Any, challenger: Any, champion: Any | None = None) -> str:
    """The person's view of ``evaluation.json``, with plots of both models on the holdout."""
    plots = _evaluation_plots(y, challenger, champion, report.get("task", "regression"))
    return _EVALUATION.render(r=report, plots=plots)
