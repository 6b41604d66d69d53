"""`sumctl bench`: quality, latency and memory of local bundles beside cloud LLM outputs.

    from sumctl.benchmarks.bench.runner import BenchConfig, run_bench
    result = run_bench(BenchConfig(data="eval.jsonl", models=["bundles/flan-t5-int8"],
                                   clouds=["gpt-4o=outs.jsonl"], out="bench-out"))

Order of work: read and check everything the user gave (data, cloud files, bundles, output
folder) before any model runs, so bad input fails in a second rather than after an hour. Then
each local bundle runs in its own child process (worker.py), the live endpoint (if any) is
called, everything is scored against the same references, and the report is written.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sumctl.runtime.bundle import MANIFEST_NAME, Bundle, package_versions
from sumctl.benchmarks.eval.cloud import CloudOutput, estimate_cost, load_cloud_outputs, parse_cloud_spec, summarize_live, write_cloud_outputs
from sumctl.runtime.backends.openai_compat import ChatClient, api_key_from_env, estimate_tokens, public_url
from sumctl.runtime.bundle.configs import DEFAULT_CONTEXT_TOKENS, DEFAULT_KEY_ENV
from sumctl.benchmarks.errors import BenchError
from sumctl.benchmarks.eval.memory import peak_distribution
from sumctl.runtime.errors import InputError
from sumctl.runtime.guards import copy_coverage, quality_flags
from sumctl.runtime.numbers import percentile
from sumctl.benchmarks.eval.metrics import BOOTSTRAP_RESAMPLES, CONFIDENCE, RougeScorer, bertscore_f1, bertscore_status, bootstrap_ci, compression_ratio, sentence_splitter_name, word_count
from sumctl.benchmarks.eval.records import Dataset, load_dataset
from sumctl.runtime.models import resolve_model
from sumctl.runtime.store import data_dir
from sumctl.runtime.prompts import DEFAULT_LENGTH, default_templates, fill
from sumctl.runtime.summarizer import check_length
from sumctl.runtime.jsonout import strict_dumps

REPORT_FILES = ("report.md", "report.json", "per_document.csv")
QUALITY_KEYS = ("rouge1", "rouge2", "rougeLsum")


class Progress(Protocol):
    def start(self, system: str, total: int) -> None: ...
    def advance(self, system: str) -> None: ...
    def note(self, message: str) -> None: ...


class _Silent:
    def start(self, system, total): pass
    def advance(self, system): pass
    def note(self, message): pass


@dataclass
class BenchConfig:
    data: str | Path
    models: list[str] = field(default_factory=list)
    clouds: list[str] = field(default_factory=list)  # NAME=OUTPUTS.jsonl
    cloud_endpoint: str | None = None
    cloud_model: str | None = None
    cloud_name: str | None = None
    cloud_concurrency: int = 4
    cloud_api_key_env: str = DEFAULT_KEY_ENV
    cloud_cache: str | Path | None = None  # default: <sumctl data dir>/cloud-cache
    cloud_context_tokens: int = DEFAULT_CONTEXT_TOKENS
    cloud_retries: int = 5
    cloud_backoff: float = 1.0
    cloud_timeout: float = 300.0
    price_per_1k: float | None = None
    price_per_1k_output: float | None = None
    length: str = DEFAULT_LENGTH
    limit: int | None = None
    out: str | Path | None = None
    seed: int = 0
    threads: int | None = None
    force: bool = False
    bertscore: bool = True  # when possible; skipped (and said so) otherwise
    memory_runs: int = 5  # fresh processes whose peak RSS is measured, per local model


@dataclass
class DocResult:
    id: str
    summary: str
    latency_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    chapters: int | None = None
    cached_calls: int | None = None
    tokens_estimated: bool = False
    scores: dict = field(default_factory=dict)
    summary_words: int = 0
    compression: float | None = None
    cost: float | None = None
    # The guards' verdict on the final summary, the same check for every system (cloud files
    # included), and the share of its words in verbatim 8-word runs of the transcript.
    flags: list[str] = field(default_factory=list)
    copy_rate: float | None = None
    # Local systems: every model call (chapters and reduce steps), those still degenerate after
    # the guards' retry, and those retried.
    generations: int | None = None
    flagged_generations: int | None = None
    retried_generations: int | None = None


@dataclass
class SystemResult:
    name: str
    kind: str  # "local", "cloud-file" or "cloud-live"
    docs: list[DocResult]
    info: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


@dataclass
class BenchResult:
    out: Path
    systems: list[SystemResult]
    dataset: Dataset
    environment: dict
    notes: list[str]
    files: dict[str, Path] = field(default_factory=dict)
    report: dict = field(default_factory=dict)


def run_bench(config: BenchConfig, progress: Progress | None = None) -> BenchResult:
    progress = progress or _Silent()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    check_length(config.length)
    if not (config.models or config.clouds or config.cloud_endpoint):
        raise InputError("nothing to compare: give at least one --model, --cloud or --cloud-endpoint")
    if bool(config.cloud_endpoint) != bool(config.cloud_model):
        raise InputError("--cloud-endpoint and --cloud-model go together (the API needs a model name)")

    dataset = load_dataset(config.data, limit=config.limit)
    ids = dataset.ids()
    out = _check_out_dir(config)
    names: set[str] = set()
    cloud_files = []
    for spec in config.clouds:
        name, path = parse_cloud_spec(spec)
        cloud_files.append((_unique(name, names), path, load_cloud_outputs(path, ids)))
    bundles = [(_unique(b.manifest.name or b.path.name, names), b)
               for b in (resolve_model(spec) for spec in config.models)]
    client = None
    if config.cloud_endpoint:
        cache = Path(config.cloud_cache) if config.cloud_cache else data_dir() / "cloud-cache"
        client = ChatClient(config.cloud_endpoint, config.cloud_model,
                            api_key=api_key_from_env(config.cloud_api_key_env),
                            concurrency=config.cloud_concurrency, timeout=config.cloud_timeout,
                            max_retries=config.cloud_retries, backoff=config.cloud_backoff,
                            cache_dir=cache, params={"temperature": 0.0, "seed": config.seed})
    out.mkdir(parents=True, exist_ok=True)  # only now: bad input leaves nothing behind
    notes: list[str] = []
    if dataset.total_records > len(dataset.records):
        notes.append(f"Evaluated the first {len(dataset.records)} of {dataset.total_records} "
                     f"records in {dataset.path.name} (--limit).")

    systems: list[SystemResult] = []
    for name, bundle in bundles:
        systems.append(_run_local(name, bundle, dataset, config, progress))
    if client is not None:
        live = _run_live(_unique(config.cloud_name or config.cloud_model, names), client, dataset,
                         config, progress, out)
        systems.append(live)
        if live.info["cache_hits"]:
            notes.append(f"{live.name}: {live.info['cache_hits']} answers came from the cache "
                         f"({live.info['cache_dir']}); their latencies are the ones measured when "
                         f"they were first asked, and their cost was paid then "
                         f"({live.info['calls_made']} new calls this run).")
    for name, path, outputs in cloud_files:
        systems.append(_from_cloud_file(name, path, outputs, dataset, config))

    progress.note("Scoring")
    _score(systems, dataset, config, notes)
    environment = environment_info(config, bundles, dataset)
    environment["started_at"] = started_at
    result = BenchResult(out, systems, dataset, environment, notes)

    from sumctl.benchmarks.bench.report import write_report

    write_report(result, config)
    return result


# --- input checks ---------------------------------------------------------------------------

def _check_out_dir(config: BenchConfig) -> Path:
    out = Path(config.out) if config.out else Path(time.strftime("bench-%Y%m%d-%H%M%S"))
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder (choose another --out)")
    existing = [n for n in REPORT_FILES if (out / n).exists()]
    if existing and not config.force:
        raise InputError(f"{out}: already holds a report ({existing[0]}); choose another --out, "
                         "or pass --force to replace it")
    return out


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def bundle_size_bytes(bundle: Bundle) -> int:
    files = [bundle.path / rel for rel in bundle.manifest.files] + [bundle.path / MANIFEST_NAME]
    return sum(f.stat().st_size for f in files if f.is_file())


# --- running the systems ----------------------------------------------------------------------

MEMORY_RUN_DOCUMENTS = 3  # what each extra memory run summarizes: the dataset's first documents


def _run_local(name: str, bundle: Bundle, dataset: Dataset, config: BenchConfig,
               progress: Progress) -> SystemResult:
    progress.start(name, len(dataset.records))
    info = {"path": str(bundle.path), "sha256": bundle.sha256, "backend": bundle.manifest.backend,
            "quantization": bundle.manifest.quantization, "label": bundle.manifest.label,
            "source": bundle.manifest.source.get("model"), "size_bytes": bundle_size_bytes(bundle)}
    started = time.perf_counter()
    docs, events = _run_worker(bundle, dataset.records, config, lambda: progress.advance(name))
    info["wall_s"] = round(time.perf_counter() - started, 3)
    info.update(events)
    # One process's peak is one draw: the same T5 run has read 0.7 GB and 1.4 GB (glibc's heap;
    # see native_heap). Fresh processes on the first documents give the spread; the worst is reported.
    peaks = [info["peak_rss_bytes"]]
    for _ in range(max(0, config.memory_runs - 1)):
        progress.note(f"{name}: memory run {len(peaks) + 1} of {config.memory_runs}")
        _, more = _run_worker(bundle, dataset.records[:MEMORY_RUN_DOCUMENTS], config, lambda: None)
        peaks.append(more["peak_rss_bytes"])
    info.update(peak_rss_runs_bytes=peaks, peak_rss_bytes=max(peaks))
    return SystemResult(name, "local", docs, info)


def _run_worker(bundle: Bundle, records, config: BenchConfig, advance) -> tuple[list[DocResult], dict]:
    """Summarize `records` in a fresh worker process: the documents, and what the worker
    reported of itself (load time, RSS before and after the load, peak RSS)."""
    job = {"bundle": str(bundle.path.resolve()), "length": config.length, "threads": config.threads,
           "records": [{"id": r.id, "transcript": r.transcript.to_dict(), "query": r.query}
                       for r in records]}
    docs: list[DocResult] = []
    info: dict = {}
    with tempfile.TemporaryDirectory(prefix="sumctl-bench-") as tmp:
        job_path = Path(tmp) / "job.json"
        job_path.write_text(strict_dumps(job), encoding="utf-8")
        stderr_path = Path(tmp) / "stderr.txt"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "sumctl.benchmarks.bench.worker", str(job_path)],
                                    stdout=subprocess.PIPE, stderr=stderr, text=True,
                                    encoding="utf-8")
            error = None
            try:
                for line in proc.stdout:
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    kind = event.pop("event", None)
                    if kind == "loaded":
                        info.update(load_s=event["load_s"],
                                    rss_before_load_bytes=event["rss_before_load_bytes"],
                                    rss_after_load_bytes=event["rss_after_load_bytes"])
                    elif kind == "doc":
                        docs.append(DocResult(event["id"], event["summary"], event["latency_s"],
                                              event["prompt_tokens"], event["output_tokens"],
                                              event["chapters"],
                                              generations=event.get("generations"),
                                              flagged_generations=event.get("flagged_generations"),
                                              retried_generations=event.get("retried_generations")))
                        advance()
                    elif kind == "done":
                        info["peak_rss_bytes"] = event["peak_rss_bytes"]
                    elif kind == "error":
                        error = event["message"]
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if error:
            raise BenchError(f"{bundle.path}: {error}")
        if code != 0 or len(docs) != len(records) or "peak_rss_bytes" not in info:
            tail = [ln for ln in stderr_path.read_text("utf-8", "replace").splitlines() if ln.strip()]
            last = tail[-1] if tail else f"exit status {code}"
            raise BenchError(f"{bundle.path}: the model process failed after {len(docs)} of "
                             f"{len(records)} documents ({last})")
    return docs, info


def _run_live(name: str, client: ChatClient, dataset: Dataset, config: BenchConfig,
              progress: Progress, out: Path) -> SystemResult:
    progress.start(name, len(dataset.records))
    live = summarize_live(dataset.records, client, name=name, length=config.length,
                          context_tokens=config.cloud_context_tokens,
                          on_done=lambda _: progress.advance(name))
    docs = [DocResult(o.id, o.summary, o.latency_s, o.prompt_tokens, o.completion_tokens,
                      o.calls, o.cached_calls) for o in live.outputs]
    saved = write_cloud_outputs(live.outputs, out / f"cloud-{_file_safe(name)}.jsonl")
    info = {**client.describe(), "calls_made": live.calls_made, "cache_hits": live.cache_hits,
            "retries": live.retries, "wall_s": live.wall_s, "outputs_file": saved.name,
            "context_tokens": config.cloud_context_tokens}
    return SystemResult(name, "cloud-live", docs, info)


def _from_cloud_file(name: str, path: Path, outputs: dict[str, CloudOutput], dataset: Dataset,
                     config: BenchConfig) -> SystemResult:
    template = default_templates()[config.length]
    docs = []
    for record in dataset.records:
        o = outputs[record.id]
        estimated = o.prompt_tokens is None or o.completion_tokens is None
        prompt_tokens = o.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = estimate_tokens(fill(template, record.transcript.text()))
        output_tokens = o.completion_tokens if o.completion_tokens is not None else estimate_tokens(o.summary)
        docs.append(DocResult(o.id, o.summary, o.latency_s, prompt_tokens, output_tokens,
                              tokens_estimated=estimated))
    return SystemResult(name, "cloud-file", docs, {"path": str(path)})


def _file_safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._") or "cloud"


# --- scoring --------------------------------------------------------------------------------

def _score(systems: list[SystemResult], dataset: Dataset, config: BenchConfig, notes: list[str]) -> None:
    scorer = RougeScorer()
    by_id = {r.id: r for r in dataset.records}
    use_bert, bert_note = bertscore_status() if config.bertscore else (False, "skipped: turned off")
    notes.append(f"BERTScore {bert_note}.")
    for system in systems:
        for doc in system.docs:
            record = by_id[doc.id]
            doc.scores = scorer.score(doc.summary, record.reference)
            doc.summary_words = word_count(doc.summary)
            doc.compression = compression_ratio(record.transcript.word_count(), doc.summary_words)
            source = record.transcript.text()
            doc.flags = quality_flags(doc.summary, source, set(record.transcript.speakers))
            doc.copy_rate = copy_coverage(doc.summary, source)
            if system.kind != "local" and doc.prompt_tokens is not None:
                doc.cost = estimate_cost(doc.prompt_tokens, doc.output_tokens or 0,
                                         config.price_per_1k, config.price_per_1k_output)
        if use_bert:
            f1 = bertscore_f1([d.summary for d in system.docs], [by_id[d.id].reference for d in system.docs])
            for doc, value in zip(system.docs, f1):
                doc.scores["bertscore_f1"] = value
        system.metrics = _aggregate(system, config)
    if any(s.kind != "local" for s in systems) and config.price_per_1k is None:
        notes.append("No --price-per-1k given: cloud cost not estimated.")
    if any(d.tokens_estimated for s in systems for d in s.docs):
        notes.append("Cloud files without token counts: tokens estimated at "
                     "1 per 3 characters of the same prompt the local models got.")


def _aggregate(system: SystemResult, config: BenchConfig) -> dict:
    docs = system.docs
    # One seed for every system: with the same number of documents each system is resampled on
    # the same document indices (a paired bootstrap), so the intervals compare like with like.
    metrics = {key: bootstrap_ci([d.scores[key] for d in docs], seed=config.seed)
               for key in (*QUALITY_KEYS, "bertscore_f1") if key in docs[0].scores}
    latencies = [d.latency_s for d in docs if d.latency_s is not None]
    outputs = sum(d.output_tokens or 0 for d in docs)
    # A rate from guessed token counts would look measured; leave it out.
    measured = not any(d.tokens_estimated for d in docs)
    metrics.update(
        documents=len(docs),
        summary_words_mean=_mean([d.summary_words for d in docs]),
        compression_mean=_mean([d.compression for d in docs]),
        flag_rate=sum(1 for d in docs if d.flags) / len(docs),
        copy_rate_mean=_mean([d.copy_rate for d in docs]),
        generation_flag_rate=_ratio(sum(d.flagged_generations or 0 for d in docs),
                                    sum(d.generations or 0 for d in docs)),
        generation_retry_rate=_ratio(sum(d.retried_generations or 0 for d in docs),
                                     sum(d.generations or 0 for d in docs)),
        latency_p50_s=percentile(latencies, 50), latency_p95_s=percentile(latencies, 95),
        latency_mean_s=_mean(latencies), latency_total_s=sum(latencies) if latencies else None,
        prompt_tokens_mean=_mean([d.prompt_tokens for d in docs]),
        output_tokens_mean=_mean([d.output_tokens for d in docs]),
        tokens_per_s=(outputs / sum(latencies)) if measured and latencies and sum(latencies) > 0 else None,
    )
    if system.kind == "local":
        peaks = system.info.get("peak_rss_runs_bytes") or []
        spread = peak_distribution(peaks) if peaks else {}
        metrics.update(load_s=system.info.get("load_s"), peak_rss_bytes=system.info.get("peak_rss_bytes"),
                       peak_rss_min_bytes=spread.get("min"), peak_rss_median_bytes=spread.get("median"),
                       peak_rss_runs=len(peaks), size_bytes=system.info.get("size_bytes"))
    else:
        costs = [d.cost for d in docs if d.cost is not None]
        metrics.update(cost_total=sum(costs) if costs else None, cost_per_doc=_mean(costs))
    return metrics


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _mean(values) -> float | None:
    data = [v for v in values if v is not None]
    return sum(data) / len(data) if data else None


# --- reproducibility --------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_info(config: BenchConfig, bundles: list[tuple[str, Bundle]], dataset: Dataset) -> dict:
    try:
        import psutil

        physical, memory = psutil.cpu_count(logical=False), psutil.virtual_memory().total
    except ImportError:
        physical, memory = None, None
    return {
        "versions": package_versions("onnxruntime", "llama-cpp-python", "tokenizers", "numpy",
                                     "rouge-score", "nltk", "matplotlib", "psutil"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "memory_bytes": memory,
        "threads": config.threads or "all cores (backend default)",
        "seed": config.seed,
        "length": config.length,
        "bundles": {name: {"path": str(b.path), "sha256": b.sha256} for name, b in bundles},
        "dataset": {"path": str(dataset.path), "file_sha256": dataset.file_sha256,
                    "evaluated_sha256": dataset.sha256, "records": len(dataset.records),
                    "records_in_file": dataset.total_records},
        "rouge": {"package": "rouge-score", "use_stemmer": True, "lsum_sentence_split": sentence_splitter_name(),
                  "measure": "F1"},
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "confidence": CONFIDENCE,
                      "method": "percentile, paired across systems (same seed)"},
        "command": (" ".join([Path(sys.argv[0]).name, *map(public_url, sys.argv[1:])])
                    if sys.argv and "sumctl" in Path(sys.argv[0]).name else None),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
