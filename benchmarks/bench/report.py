"""The bench's written results: report.md (for people), report.json (for scripts),
per_document.csv (to find the worst cases) and the PNG figures (plots.py)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from sumctl.benchmarks.eval.files import write_public_text
from sumctl.benchmarks.eval.metrics import word_count
from sumctl.runtime.jsonout import strict_dumps

MIB = 1024 * 1024
REPORT_FORMAT = 1

QUALITY_COLUMNS = ("System", "Kind", "ROUGE-1", "ROUGE-2", "ROUGE-Lsum", "Words", "Compr.",
                   "Flagged", "Copy")
COST_COLUMNS = ("System", "p50", "p95", "Mean", "Tok/s", "Load", "Peak RSS", "Size", "Cost")
COLUMNS = QUALITY_COLUMNS + COST_COLUMNS[1:]


def table_rows(systems) -> list[dict[str, str]]:
    """One row of display strings per system, shared by report.md and the terminal table."""
    rows = []
    for s in systems:
        m = s.metrics
        rows.append({
            "System": s.name, "Kind": s.kind,
            "ROUGE-1": _ci(m.get("rouge1")), "ROUGE-2": _ci(m.get("rouge2")),
            "ROUGE-Lsum": _ci(m.get("rougeLsum")),
            "Words": _num(m.get("summary_words_mean"), 0), "Compr.": _num(m.get("compression_mean"), 1, "×"),
            "Flagged": _percent(m.get("flag_rate")), "Copy": _percent(m.get("copy_rate_mean")),
            "p50": _secs(m.get("latency_p50_s")), "p95": _secs(m.get("latency_p95_s")),
            "Mean": _secs(m.get("latency_mean_s")), "Tok/s": _rate(m.get("tokens_per_s")),
            "Load": _secs(m.get("load_s")),
            "Peak RSS": _peak(m), "Size": _mib(m.get("size_bytes")),
            "Cost": _money(m.get("cost_total")),
        })
    return rows


def _peak(m: dict) -> str:
    """The worst peak, then (min-median, runs) when several fresh processes were measured."""
    worst = _mib(m.get("peak_rss_bytes"))
    if (m.get("peak_rss_runs") or 0) < 2:
        return worst
    return (f"{worst} (min {m['peak_rss_min_bytes'] / MIB:,.0f}, median {m['peak_rss_median_bytes'] / MIB:,.0f}, "
            f"{m['peak_rss_runs']} runs)")


def _ci(q: dict | None) -> str:
    if not q or q.get("n", 0) == 0:
        return "–"
    return f"{q['mean'] * 100:.1f} [{q['low'] * 100:.1f}, {q['high'] * 100:.1f}]"


def _num(value, digits: int, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _secs(value) -> str:
    if value is None:
        return "–"
    if value < 0.01:
        return "<0.01"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _rate(value) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _mib(value) -> str:
    if not value:
        return "–"
    return f"{value / MIB:,.0f} MiB" if value >= MIB else f"{value / 1024:,.1f} KiB"


def _money(value) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if value >= 1 else f"${value:.3g}"


def write_report(result, config) -> dict[str, Path]:
    from sumctl.benchmarks.bench.plots import write_plots

    out = result.out
    ds = result.dataset
    plots = write_plots(result.systems, out, title=f"sumctl bench: {len(ds.records)} documents from "
                        f"{ds.path.name}, {result.environment['length']} summaries")
    if not plots:
        result.notes.append("Plots skipped: matplotlib is not installed (pip install 'sumctl[bench]').")
    files = {"json": out / "report.json", "md": out / "report.md", "csv": out / "per_document.csv",
             **plots}
    result.files = files
    report = build_json(result, files)
    write_public_text(files["csv"], per_document_csv(result))
    write_public_text(files["md"], markdown(result, plots))
    # Last: a report.json on disk means the whole report was written.
    write_public_text(files["json"], strict_dumps(report, indent=2, ensure_ascii=False, default=str) + "\n")
    result.report = report
    return files


def build_json(result, files: dict[str, Path]) -> dict:
    return {
        "format": REPORT_FORMAT,
        "systems": [{
            "name": s.name, "kind": s.kind, "info": s.info, "metrics": s.metrics,
            "documents": [{
                "id": d.id, "summary": d.summary, "latency_s": d.latency_s,
                "prompt_tokens": d.prompt_tokens, "output_tokens": d.output_tokens,
                "chapters": d.chapters, "cached_calls": d.cached_calls,
                "tokens_estimated": d.tokens_estimated, "summary_words": d.summary_words,
                "compression": d.compression, "cost": d.cost, "scores": d.scores,
            } for d in s.docs],
        } for s in result.systems],
        "environment": result.environment,
        "notes": result.notes,
        "files": {name: path.name for name, path in files.items()},
    }


def per_document_csv(result) -> str:
    by_id = {r.id: r for r in result.dataset.records}
    extra = ["bertscore_f1"] if any("bertscore_f1" in d.scores for s in result.systems for d in s.docs) else []
    header = ["system", "kind", "id", "rouge1", "rouge2", "rougeLsum", *extra, "summary_words",
              "reference_words", "transcript_words", "compression", "flags", "copy_rate",
              "latency_s", "prompt_tokens",
              "output_tokens", "tokens_per_s", "cached_calls", "cost", "summary", "reference"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for s in result.systems:
        for d in s.docs:
            record = by_id[d.id]
            tps = (d.output_tokens / d.latency_s) if d.output_tokens and d.latency_s else None
            writer.writerow([s.name, s.kind, d.id,
                             *(_round(d.scores.get(k)) for k in ("rouge1", "rouge2", "rougeLsum", *extra)),
                             d.summary_words, word_count(record.reference), record.transcript.word_count(),
                             _round(d.compression, 2), " ".join(d.flags), _round(d.copy_rate, 3),
                             d.latency_s, d.prompt_tokens, d.output_tokens,
                             _round(tps, 2), d.cached_calls, _round(d.cost, 6), d.summary, record.reference])
    return buffer.getvalue()


def _round(value, digits: int = 4):
    return None if value is None else round(value, digits)


READING_GUIDE = """\
- **ROUGE-1 / ROUGE-2 / ROUGE-Lsum**: word, word-pair and longest-common-subsequence overlap with
  the reference summary (F1 × 100, stemmed; Lsum with one sentence a line). Brackets hold the 95%
  bootstrap interval of the mean: two systems whose intervals overlap a lot are not clearly
  different on this data. ROUGE rewards wording close to the references; read a few summaries in
  per_document.csv before trusting a small difference.
- **Words / Compr.**: mean summary length, and transcript words per summary word. A system much
  longer than the references tends to gain recall and lose precision.
- **Flagged / Copy**: the share of summaries the degenerate-output guards flag (a loop, a copy of
  the transcript, or `Name: ...` transcript lines), judged the same way for every system; and the
  mean share of summary words inside verbatim 8-word runs of the transcript. A summary should
  restate, not quote.
- **p50 / p95 / Mean**: seconds per document, chapterization and every model call included.
  Cloud latencies are per call over the network, so they depend on the provider's load.
- **Tok/s**: generated tokens per second of summarizing. **Load**: seconds to load the bundle.
- **Peak RSS**: the most memory a process running that bundle held (its own processes, so models
  do not inflate each other): the worst of `--memory-runs` fresh processes (the full run, then
  more on the first documents), with the best and the median of those runs beside it. One
  process's peak is one draw: the allocator's state moves it. **Size**: the bundle's
  files on disk.
- **Cost**: from the price per 1k tokens you gave; local bundles cost your own hardware."""


def markdown(result, plots: dict[str, Path]) -> str:
    env = result.environment
    ds = env["dataset"]
    lines = ["# sumctl bench report", "",
             f"{ds['records']} documents from `{Path(ds['path']).name}`"
             + (f" (of {ds['records_in_file']})" if ds["records_in_file"] != ds["records"] else "")
             + f", `{env['length']}` summaries, on {env['cpu']} "
             f"({env['logical_cores']} logical cores, threads: {env['threads']}), {env['started_at']}.", "",
             "## Results", "",
             "ROUGE is F1 × 100, mean [95% bootstrap interval]; Words is the mean summary length, "
             "Compr. the transcript words per summary word. Latency is seconds per document.", ""]
    rows = table_rows(result.systems)
    lines += _md_table(rows, QUALITY_COLUMNS)
    lines += ["### Speed, memory and cost", "",
              "p50 / p95 / Mean: seconds per document; Load: seconds to load the bundle; "
              "Tok/s: generated tokens per second.", ""]
    lines += _md_table(rows, COST_COLUMNS)
    for name, title in (("quality_latency", "Quality against latency"), ("latency", "Latency per document"),
                        ("memory", "Memory")):
        if name in plots:
            lines += [f"![{title}]({plots[name].name})", ""]
    lines += ["## Reading this report", "", READING_GUIDE, ""]
    lines += ["## Systems", ""]
    for s in result.systems:
        lines.append(f"- **{s.name}** ({s.kind}): " + _describe(s))
    lines.append("")
    lines += ["## Worst cases", "",
              "The three documents with the lowest ROUGE-Lsum for each system (all of them are in "
              "`per_document.csv`).", ""]
    refs = {r.id: r.reference for r in result.dataset.records}
    for s in result.systems:
        worst = sorted(s.docs, key=lambda d: d.scores.get("rougeLsum", 0))[:3]
        lines.append(f"### {s.name}")
        lines.append("")
        for d in worst:
            lines.append(f"- `{d.id}` ROUGE-Lsum {d.scores.get('rougeLsum', 0) * 100:.1f}: "
                         f"{_clip(d.summary)}  \n  reference: {_clip(refs[d.id])}")
        lines.append("")
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += ["## Reproducibility", "", "```json", strict_dumps(env, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def _md_table(rows: list[dict], columns) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if c in ("System", "Kind") else "--:" for c in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |")
    return lines + [""]


def _describe(s) -> str:
    i = s.info
    if s.kind == "local":
        return (f"`{i['path']}`, backend {i['backend']}, {i['quantization']}"
                + (f", {i['label']}" if i.get("label") else "") + f", sha256 {i['sha256'][:12]}…")
    if s.kind == "cloud-live":
        return (f"{i['model']} at {i['endpoint']}; {i['calls_made']} HTTP calls this run "
                f"({i['retries']} retries), {i['cache_hits']} answers from the cache; outputs saved "
                f"to `{i['outputs_file']}`")
    return f"outputs read from `{i['path']}`"


def _clip(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
