"""A gate's verdict as JUnit XML, a Markdown pull-request comment and a self-contained HTML report."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from goldenpath.evals._compare import Comparison, MetricComparison
    from goldenpath.evals._gate import GateResult, RuleResult

JUNIT_FILE = "junit.xml"
MARKDOWN_FILE = "summary.md"
HTML_FILE = "report.html"


def write_reports(result: GateResult, out_dir: Path) -> None:
    """Write :data:`JUNIT_FILE`, :data:`MARKDOWN_FILE` and :data:`HTML_FILE` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / JUNIT_FILE).write_text(junit_xml(result), encoding="utf-8")
    (out_dir / MARKDOWN_FILE).write_text(markdown_summary(result), encoding="utf-8")
    (out_dir / HTML_FILE).write_text(html_report(result), encoding="utf-8")


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}g}"


def _signed(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.4g}"


def _p(rule: RuleResult) -> str:
    if rule.p_value is None:
        return "-"
    if rule.adjusted_p_value is None or rule.adjusted_p_value == rule.p_value:
        return f"{rule.p_value:.3g}"
    return f"{rule.p_value:.3g} ({rule.adjusted_p_value:.3g})"


def _observed(rule: RuleResult) -> str:
    if rule.rule == "max_drop" and rule.observed is not None:
        return _signed(rule.observed)
    return _num(rule.observed)


def _pairing(comparison: Comparison | None) -> str:
    if comparison is None:
        return "no baseline"
    return (
        f"{comparison.paired_items} paired items ({comparison.only_in_candidate} only in the candidate, "
        f"{comparison.only_in_baseline} only in the baseline)"
    )


def _headline(result: GateResult) -> str:
    if result.passed:
        return f"Quality gate passed: {len(result.rules)} rules"
    return f"Quality gate failed: {len(result.failures)} of {len(result.rules)} rules"


def junit_xml(result: GateResult) -> str:
    """One testcase per rule; a failed rule carries a ``<failure>`` with its message."""
    failures = str(len(result.failures))
    suites = ET.Element("testsuites", name="goldenpath gate", tests=str(len(result.rules)), failures=failures)
    suite = ET.SubElement(
        suites, "testsuite", name="goldenpath gate", tests=str(len(result.rules)), failures=failures, errors="0"
    )
    for rule in result.rules:
        case = ET.SubElement(suite, "testcase", classname=f"gate.{rule.metric}", name=rule.name)
        if not rule.passed:
            failure = ET.SubElement(case, "failure", message=rule.message, type=rule.rule)
            failure.text = rule.message
        else:
            ET.SubElement(case, "system-out").text = rule.message
    ET.SubElement(
        suite, "system-out"
    ).text = f"candidate {result.candidate_source}, baseline {result.baseline_source}: {_pairing(result.comparison)}"
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rule_threshold(rule: RuleResult) -> str:
    return {"min": ">= ", "max": "<= ", "max_drop": "drop <= "}[rule.rule] + f"{rule.threshold:g}"


def _metric_rows(comparison: Comparison) -> list[MetricComparison]:
    return [m for m in comparison.metrics.values() if m.n_paired > 0]


def markdown_summary(result: GateResult) -> str:
    """A pull-request comment: the verdict, every rule, the per-metric comparison and worst regressions."""
    mark = "✅" if result.passed else "❌"
    lines = [
        f"## {mark} {_headline(result)}",
        "",
        f"Candidate `{_md(result.candidate_source)}`"
        + (f" vs baseline `{_md(result.baseline_source)}`" if result.baseline_source else "")
        + f": {_pairing(result.comparison)}.",
        "",
        "| | metric | rule | observed | p (Holm) | detail |",
        "|---|---|---|---|---|---|",
    ]
    for rule in result.rules:
        lines.append(
            f"| {'✅' if rule.passed else '❌'} | {_md(rule.metric)} | {_rule_threshold(rule)} | {_observed(rule)} "
            f"| {_p(rule)} | {_md(rule.message)} |"
        )
    comparison = result.comparison
    if comparison is not None and _metric_rows(comparison):
        lines += [
            "",
            "| metric | candidate | baseline | difference | CI | improved / regressed / unchanged | test |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in _metric_rows(comparison):
            lines.append(
                f"| {_md(m.metric)} | {_num(m.candidate_mean)} | {_num(m.baseline_mean)} | {_signed(m.mean_diff)} "
                f"| {m.spec.confidence * 100:g}%: {_signed(m.ci_low)} to {_signed(m.ci_high)} "
                f"| {m.improved} / {m.regressed} / {m.unchanged} | {m.method} |"
            )
        regressions = [m for m in _metric_rows(comparison) if m.worst]
        if regressions:
            lines += ["", "<details><summary>Worst regressions</summary>", ""]
            for m in regressions:
                shown = ", ".join(f"`{_md(w.item_id)}` ({w.baseline:.4g} → {w.candidate:.4g})" for w in m.worst)
                lines.append(f"- **{_md(m.metric)}**: {shown}")
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.pass{color:#1a7f37}.fail{color:#cf222e}.banner{padding:.6em 1em;border-radius:6px;font-size:1.3em}
.banner.pass{background:#dafbe1}.banner.fail{background:#ffebe9}svg text{font-size:12px;font-family:sans-serif}
"""

_ROW_H = 34
_LABEL_W = 160
_PLOT_W = 420


def _x(value: float, lo: float, hi: float) -> float:
    return _LABEL_W + 10 + (value - lo) / (hi - lo) * (_PLOT_W - 20)


def _difference_svg(metrics: list[MetricComparison]) -> str:
    """Per metric, on its own axis: the mean difference, its CI, zero and the tolerated drop."""
    parts = [f'<svg width="{_LABEL_W + _PLOT_W + 10}" height="{_ROW_H * len(metrics) + 10}" role="img">']
    for row, m in enumerate(metrics):
        y = row * _ROW_H + 18
        tolerance = -m.spec.max_drop if m.spec.higher_is_better else m.spec.max_drop
        points = [m.ci_low, m.ci_high, m.mean_diff, 0.0, tolerance]
        lo, hi = min(points), max(points)
        pad = (hi - lo) * 0.1 or 1e-3
        lo, hi = lo - pad, hi + pad
        colour = "#cf222e" if m.significant_regression else "#1a7f37"
        parts += [
            f'<text x="0" y="{y + 4}">{escape(m.metric)}</text>',
            f'<line x1="{_x(0, lo, hi):.1f}" x2="{_x(0, lo, hi):.1f}" y1="{y - 12}" y2="{y + 12}" stroke="#888"/>',
            f'<line x1="{_x(m.ci_low, lo, hi):.1f}" x2="{_x(m.ci_high, lo, hi):.1f}" y1="{y}" y2="{y}" '
            f'stroke="{colour}" stroke-width="3"/>',
            f'<circle cx="{_x(m.mean_diff, lo, hi):.1f}" cy="{y}" r="5" fill="{colour}">'
            f"<title>{escape(m.metric)}: {_signed(m.mean_diff)} ({_signed(m.ci_low)} to {_signed(m.ci_high)})"
            "</title></circle>",
            f'<text x="{_x(lo, lo, hi):.1f}" y="{y + 15}" fill="#666">{_signed(lo)}</text>',
            f'<text x="{_x(hi, lo, hi):.1f}" y="{y + 15}" fill="#666" text-anchor="end">{_signed(hi)}</text>',
        ]
        if m.spec.max_drop > 0:
            tx = _x(tolerance, lo, hi)
            parts.append(
                f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{y - 12}" y2="{y + 12}" stroke="#cf222e" '
                'stroke-dasharray="3,3"><title>tolerated drop</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _changes_svg(metrics: list[MetricComparison]) -> str:
    """Per metric, a stacked bar of improved, unchanged and regressed items."""
    parts = [f'<svg width="{_LABEL_W + _PLOT_W + 10}" height="{_ROW_H * len(metrics) + 10}" role="img">']
    for row, m in enumerate(metrics):
        y = row * _ROW_H + 6
        parts.append(f'<text x="0" y="{y + 16}">{escape(m.metric)}</text>')
        x = float(_LABEL_W)
        for count, colour, label in (
            (m.improved, "#1a7f37", "improved"),
            (m.unchanged, "#bbb", "unchanged"),
            (m.regressed, "#cf222e", "regressed"),
        ):
            width = count / m.n_paired * _PLOT_W
            if width > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="22" fill="{colour}">'
                    f"<title>{label}: {count}</title></rect>"
                )
                if width > 30:
                    parts.append(f'<text x="{x + 4:.1f}" y="{y + 16}" fill="#fff">{count}</text>')
            x += width
    parts.append("</svg>")
    return "".join(parts)


def html_report(result: GateResult) -> str:
    """A single HTML file with inline CSS and SVG: no scripts, fonts or other external assets."""
    state = "pass" if result.passed else "fail"
    body = [
        f'<div class="banner {state}">{escape(_headline(result))}</div>',
        f"<p>Candidate <code>{escape(result.candidate_source)}</code>"
        + (f", baseline <code>{escape(result.baseline_source)}</code>" if result.baseline_source else "")
        + f": {escape(_pairing(result.comparison))}.</p>",
        "<h2>Rules</h2><table><tr><th></th><th>metric</th><th>rule</th><th>observed</th>"
        "<th>p (Holm)</th><th>detail</th></tr>",
    ]
    for rule in result.rules:
        cls = "pass" if rule.passed else "fail"
        body.append(
            f'<tr><td class="{cls}">{"pass" if rule.passed else "FAIL"}</td><td>{escape(rule.metric)}</td>'
            f"<td>{escape(_rule_threshold(rule))}</td><td>{_observed(rule)}</td><td>{_p(rule)}</td>"
            f"<td>{escape(rule.message)}</td></tr>"
        )
    body.append("</table>")
    comparison = result.comparison
    metrics = _metric_rows(comparison) if comparison is not None else []
    if metrics:
        body += [
            "<h2>Differences (candidate minus baseline) with confidence intervals</h2>",
            "<p>Dot: mean paired difference; bar: bootstrap CI at the rule's confidence; grey line: no change; "
            "dashed red line: the tolerated drop. Red: a significant loss beyond the tolerance.</p>",
            _difference_svg(metrics),
            "<h2>Per-item changes</h2><p>Items improved (green), unchanged (grey) and regressed (red).</p>",
            _changes_svg(metrics),
            "<table><tr><th>metric</th><th>candidate</th><th>baseline</th><th>difference</th><th>CI</th>"
            "<th>improved</th><th>regressed</th><th>unchanged</th><th>n</th><th>epochs</th><th>test</th></tr>",
        ]
        for m in metrics:
            body.append(
                f"<tr><td>{escape(m.metric)}</td><td>{_num(m.candidate_mean)}</td><td>{_num(m.baseline_mean)}</td>"
                f"<td>{_signed(m.mean_diff)}</td><td>{_signed(m.ci_low)} to {_signed(m.ci_high)}</td>"
                f"<td>{m.improved}</td><td>{m.regressed}</td><td>{m.unchanged}</td><td>{m.n_paired}</td>"
                f"<td>{m.epochs}</td><td>{m.method}</td></tr>"
            )
        body.append("</table><h2>Worst regressions</h2>")
        for m in metrics:
            if not m.worst:
                body.append(f"<p><b>{escape(m.metric)}</b>: no item regressed.</p>")
                continue
            body.append(
                f"<h3>{escape(m.metric)}</h3><table><tr><th>item</th><th>baseline</th><th>candidate</th>"
                "<th>change</th></tr>"
            )
            body += [
                f"<tr><td>{escape(w.item_id)}</td><td>{_num(w.baseline)}</td><td>{_num(w.candidate)}</td>"
                f"<td>{_signed(w.change)}</td></tr>"
                for w in m.worst
            ]
            body.append("</table>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
        f"{escape(_headline(result))}</title><style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
