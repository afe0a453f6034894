"""HTML reports for people: a summary first, then the details, with plots embedded (one file).

Data are shown as text, never as markup: category values and column names come from users' files, so the HTML is
autoescaped and matplotlib's mathtext is off (a price band ``$5-$10`` or a column ``$\\x$`` is drawn as written, not
parsed as TeX). A report that still cannot be drawn (:func:`drawn`) becomes a plain page that says so, and the job
goes on: a report never fails a run or changes its decision.

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
    matplotlib.rcParams["text.parse_math"] = False   # data are text: `$...$` in a label is not TeX
    matplotlib.rcParams["text.usetex"] = False
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


_UNDRAWN = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ kind }} report {{ run_id }}</title></head>
<body style="font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem">
<h1>{{ kind|capitalize }} report of run <code>{{ run_id }}</code></h1>
<p>This report could not be drawn ({{ problem }}); the run went on without it. What it would show is below as
JSON (also in <code>{{ kind }}.json</code> beside this page).</p>
<pre style="white-space: pre-wrap">{{ body }}</pre></body></html>
""")


def drawn(kind: str, report: dict[str, Any], draw: Any) -> tuple[str, str | None]:
    """(the report's HTML, None), or when ``draw()`` fails, (a plain page saying so with the report as JSON,
    what failed): whatever a batch holds, its run gets a report and goes on."""
    try:
        return draw(), None
    except Exception as exc:   # a report is for people; the run's outcome never depends on drawing it
        problem = f"{type(exc).__name__}: {str(exc)[:300]}"
        import orjson

        body = orjson.dumps(report, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
        return _UNDRAWN.render(kind=kind, run_id=report.get("run_id", ""), problem=problem, body=body), problem


def fractions(counts: list[float]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]


def feature_bins(batch: dict[str, Any], reference: dict[str, Any] | None) -> tuple[list[str], list[tuple[str, Any]]]:
    """One profiled feature as bins: (labels, [("reference", counts), ("batch", counts)]): the numeric bins of
    the reference's edges, or the most frequent categories of either. What every drift chart draws."""
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
    return labels, series


def _feature_plot(name: str, batch: dict[str, Any], reference: dict[str, Any] | None) -> str:
    fig, ax = _pyplot().subplots(figsize=(4.6, 2.6))
    labels, series = feature_bins(batch, reference)
    width = 0.8 / len(series)
    for i, (label, counts) in enumerate(series):
        ax.bar([x + i * width for x in range(len(labels))], fractions(counts), width, label=label)
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
{% if r.importance and r.importance.features %}{% set imp = r.importance %}
<h2>Permutation importance ({{ imp.metric }})</h2>
<p>How much {{ imp.metric }} worsens when a feature's values are shuffled among {{ imp.rows }} held-out rows
(mean of {{ imp.repeats }} shuffles, the same for both models, with its {{ "%.0f"|format(imp.confidence * 100) }}%
interval): what each model relies on.</p>
<table><tr><th>feature</th><th class="num">challenger</th><th class="num">interval</th><th class="num">champion</th>
<th class="num">interval</th></tr>
{% for f in imp.features %}
<tr><td>{{ f.feature }}</td><td class="num">{{ "%.4f"|format(f.challenger.mean) }}</td>
<td class="num">[{{ "%.4f"|format(f.challenger.low) }}, {{ "%.4f"|format(f.challenger.high) }}]</td>
<td class="num">{{ "%.4f"|format(f.champion.mean) if f.champion else "–" }}</td>
<td class="num">{% if f.champion %}[{{ "%.4f"|format(f.champion.low) }}, {{ "%.4f"|format(f.champion.high) }}]
{% else %}–{% endif %}</td></tr>
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
    elif all(s.proba is not None and len(s.classes) > 2 for _, s in models):
        for label, scored in models:   # one-vs-rest: a curve per class present among the held-out rows
            fig, ax = plt.subplots(figsize=(4.5, 4))
            for k, name in enumerate(scored.classes):
                positive = np.asarray(y) == name
                if 0 < positive.sum() < len(positive):
                    skm.RocCurveDisplay.from_predictions(positive, scored.proba[:, k], name=f"{name} vs rest", ax=ax)
            plots.append((f"ROC one-vs-rest ({label})", _png(fig)))
    return plots


IMPORTANCE_PLOTTED = 20   # features in the importance plot, the most important first


def _importance_plot(importance: dict[str, Any]) -> tuple[str, str]:
    """Horizontal bars of each feature's mean importance with its interval, challenger and champion side by side."""
    import numpy as np

    plt = _pyplot()
    features = importance["features"][:IMPORTANCE_PLOTTED][::-1]   # the most important on top
    models = ["challenger"] + (["champion"] if any(f["champion"] for f in features) else [])
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(features) + 1.2))
    height = 0.8 / len(models)
    for i, label in enumerate(models):
        entries = [f[label] or {"mean": np.nan, "low": np.nan, "high": np.nan} for f in features]
        means = np.array([e["mean"] for e in entries])
        errors = np.array([[e["mean"] - e["low"] for e in entries], [e["high"] - e["mean"] for e in entries]])
        ax.barh(np.arange(len(features)) + i * height, means, height, xerr=errors, label=label, capsize=2)
    ax.set_yticks(np.arange(len(features)) + height * (len(models) - 1) / 2, [f["feature"] for f in features],
                  fontsize=7)
    ax.axvline(0, color="#555", linewidth=0.8)
    ax.set_xlabel(f"loss of {importance['metric']} when shuffled", fontsize=8)
    ax.legend(fontsize=7)
    return f"permutation importance ({importance['metric']})", _png(fig)


def _attribution_plot(version: str, shifted: dict[str, Any]) -> tuple[str, str]:
    """Each feature's share of the mean absolute attribution, on the training rows and on the window's live rows."""
    import numpy as np

    features = shifted["features"][:IMPORTANCE_PLOTTED][::-1]   # the most relied on (in training) on top
    fig, ax = _pyplot().subplots(figsize=(6, 0.35 * len(features) + 1.2))
    rows = np.arange(len(features))
    ax.barh(rows + 0.4, [f["reference_share"] for f in features], 0.4, label="training rows")
    ax.barh(rows, [f["live_share"] for f in features], 0.4, label=f"live rows ({shifted.get('live_rows')})")
    ax.set_yticks(rows + 0.2, [f["feature"] for f in features], fontsize=7)
    ax.set_xlabel("share of the mean |attribution|", fontsize=8)
    title = f"v{version}: what the model relies on, training and live"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return title, _png(fig)


def evaluation_html(report: dict[str, Any], y: Any, challenger: Any, champion: Any | None = None) -> str:
    """The person's view of ``evaluation.json``, with plots of both models on the holdout."""
    plots = _evaluation_plots(y, challenger, champion, report.get("task", "regression"))
    if (report.get("importance") or {}).get("features"):
        plots.insert(0, _importance_plot(report["importance"]))
    return _EVALUATION.render(r=report, plots=plots)


_MONITORING = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Monitoring {{ dataset }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; } td, th { border-bottom: 1px solid #ddd;
padding: .25rem .6rem; text-align: left; vertical-align: top; } th { background: #f5f5f5; }
.num { text-align: right; font-variant-numeric: tabular-nums; } .alert { color: #c62828; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(30rem, 1fr)); gap: 1rem; }
</style></head><body>
<h1>Monitoring <code>{{ dataset }}</code></h1>
<p>Window {{ latest.start }} → {{ latest.end }} · {{ latest.requests }} requests ·
serving v{{ latest.serving.version }}{% if latest.serving.canary %} with v{{ latest.serving.canary.version }}
as a {{ latest.serving.canary.percent }}% canary{% endif %}
{% if latest.unmatched_labels %} · {{ latest.unmatched_labels }} labels matched no logged prediction{% endif %}</p>
<h2>Latest window</h2>
<table><tr><th>version</th><th class="num">requests</th><th class="num">error rate</th>
<th class="num">p50 / p99 ms</th><th>input drift</th><th>prediction drift</th><th>attribution drift</th>
<th class="num">labels</th><th>realised {{ metric }}</th></tr>
{% for v, w in latest.versions.items() %}
<tr><td>v{{ v }}</td><td class="num">{{ w.requests }}</td>
<td class="num">{{ "%.2f%%"|format(100 * w.error_rate) if w.error_rate is not none else "" }}</td>
<td class="num">{{ fmt(w.latency_ms.p50) }} / {{ fmt(w.latency_ms.p99) }}</td>
<td>{{ w.drift.verdict }}{% if w.drift.message %}: {{ w.drift.message }}{% endif %}</td>
<td>{{ w.prediction_drift.status if w.prediction_drift else "" }}</td>
<td>{% if w.attribution_drift %}{{ w.attribution_drift.verdict }}{% if w.attribution_drift.message %}:
{{ w.attribution_drift.message }}{% endif %}{% endif %}</td><td class="num">{{ w.labels }}</td>
<td>{% if w.realised %}{{ "%.4f"|format(w.realised.value) }} ({{ "%.0f%%"|format(100 * w.realised.confidence) }}
interval {{ "%.4f"|format(w.realised.low) }} to {{ "%.4f"|format(w.realised.high) }}){% endif %}</td></tr>
{% endfor %}</table>
{% if actions.alerts %}<h2>Alerts raised</h2><ul>{% for a in actions.alerts %}
<li class="alert">{{ a.kind }}: {{ a.message }}</li>{% endfor %}</ul>{% endif %}
{% if actions.retraining %}<p>Retraining requested: run <code>{{ actions.retraining }}</code></p>{% endif %}
{% if actions.canary %}<p>Canary: <b>{{ actions.canary.verdict }}</b> — {{ actions.canary.reason }}</p>{% endif %}
<h2>Over time ({{ windows|length }} windows)</h2>
<div class="grid">{% for name, png in plots %}
<figure><img alt="{{ name }}" width="100%" src="data:image/png;base64,{{ png }}"></figure>{% endfor %}</div>
</body></html>
""")


def _series(windows: list[dict[str, Any]], pick: Any) -> dict[str, tuple[list[Any], list[Any]]]:
    """version → (window ends, values) for one statistic over the windows that have it."""
    import pandas as pd

    out: dict[str, tuple[list[Any], list[Any]]] = {}
    for w in windows:
        for version, v in (w.get("versions") or {}).items():
            value = pick(v)
            if value is not None:
                xs, ys = out.setdefault(version, ([], []))
                xs.append(pd.Timestamp(w["end"]))
                ys.append(value)
    return out


def monitoring_html(spec: Any, windows: list[dict[str, Any]], latest: dict[str, Any]) -> str:
    """The dataset's latest window, the monitor's actions, and each statistic over time per version."""
    from tollgate.monitoring import live_metric

    metric = live_metric(spec)
    plots = []
    panels = [
        (f"realised {metric} (with its interval)", lambda v: v.get("realised") and v["realised"]["value"], True),
        ("requests per window", lambda v: v.get("requests"), False),
        ("p99 latency, ms", lambda v: (v.get("latency_ms") or {}).get("p99"), False),
        ("error rate", lambda v: v.get("error_rate"), False),
        ("largest move of a feature's attribution share", lambda v: (v.get("attribution_drift") or {}).get(
            "max_shift"), False),
    ]
    for title, pick, with_interval in panels:
        series = _series(windows, pick)
        if not series:
            continue
        fig, ax = _pyplot().subplots(figsize=(6.4, 2.8))
        for version, (xs, ys) in sorted(series.items(), key=lambda kv: int(kv[0])):
            ax.plot(xs, ys, marker="o", label=f"v{version}")
            if with_interval:
                lows = _series(windows, lambda v: v.get("realised") and v["realised"]["low"]).get(version)
                highs = _series(windows, lambda v: v.get("realised") and v["realised"]["high"]).get(version)
                if lows and highs:
                    ax.fill_between(lows[0], lows[1], highs[1], alpha=0.2)
        if with_interval:
            floor = spec.monitoring.decay_below if spec.monitoring.decay_below is not None else spec.policy.threshold
            ax.axhline(floor, color="#c62828", linestyle="--", linewidth=1, label="decay threshold")
        if title.startswith("largest move") and spec.monitoring.attribution_drift is not None:
            ax.axhline(spec.monitoring.attribution_drift, color="#c62828", linestyle="--", linewidth=1,
                       label="alert threshold")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
        fig.autofmt_xdate()
        plots.append((title, _png(fig)))
    for version, v in sorted((latest.get("versions") or {}).items(), key=lambda kv: int(kv[0])):
        if (v.get("attribution_drift") or {}).get("features"):
            plots.append(_attribution_plot(version, v["attribution_drift"]))
    return _MONITORING.render(dataset=spec.name, latest=latest, actions=latest.get("actions") or {},
                              windows=windows, plots=plots, metric=metric,
                              fmt=lambda x: "" if x is None else f"{x:.1f}")
