"""What `sumctl batch` gains over `sumctl summarize`, and what Ray costs over the local engine.

    python -m sumctl.benchmarks.perf.batch_scaling [--extractive 200] [--default 40]
        [--nodes 1,2,4,8,16] [--cores-per-node 2] [--workdir DIR]

DialogSum dev dialogues (../shared/data/dialogsum) are written out as files, then summarized
by each system in its own child process, on the same files, one after the other:
- `sumctl summarize` with every file on one command line: one process, the model loaded once;
- `sumctl batch --engine local`: a process pool, one worker per core, one thread each;
- `sumctl batch --engine ray --workers 1` and `--workers 2`: Ray Data on a local cluster that
  the command starts itself (on loopback), one thread per actor.

Two models: the extractive baseline (200 dialogues: a model that costs almost nothing, so the
engines' own costs show) and the embedded default GGUF (40: a real model). Wall time is the
child's, start-up included: interpreter, cluster, model loads. From each batch's done-records:
- worker s/doc (c): a worker's time inside one document (read, summarize, write);
- overhead ms/doc (o): how long a worker waits between the end of one document and the start
  of its next, in the steady state: the engine's own cost per document;
- fixed s: the rest of the wall time, wall - documents x (c + o) / workers: interpreter,
  planning, the pool or the cluster (cluster s: reaching it), actors' start-up and model
  loads, the idle tail.
Ray's cost over the local engine is the difference of those figures between Ray with 2
actors and the local engine with 2 workers.

This machine has 2 cores, so no run here can show more than 2x, and a Ray cluster's own
processes (GCS, raylet, agents) share those cores with the actors. Scaling to N nodes is
therefore estimated, not measured: T(N) = F + documents x (c + o) / (N x k) + documents x d,
with c and o as measured with 2 actors, k the cores per node (one actor per core), F Ray's
fixed cost less planning, and d the driver's planning time per document (listing, hashing,
naming: serial on the driver, so it does not shrink with more nodes and caps the speed-up).
The estimate assumes a shared filesystem as fast as this disk and that actors start in
parallel on every node.

Run it on an otherwise idle machine. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sumctl.benchmarks.perf.kit import print_headline

DIALOGSUM = (Path(__file__).resolve().parents[2].parent / "shared" / "data" / "dialogsum"
             / "dialogsum.dev.jsonl")


def write_dialogues(source: Path, folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    with open(source, encoding="utf-8") as f:
        for line in f:
            if len(files) == count:
                break
            record = json.loads(line)
            path = folder / f"{record['fname']}.txt"
            path.write_text(record["dialogue"] + "\n", encoding="utf-8")
            files.append(path)
    if len(files) < count:
        raise SystemExit(f"{source} has only {len(files)} dialogues, {count} asked")
    return files


def sumctl(*args: str) -> tuple[float, str]:
    """(wall seconds, stdout) of one `sumctl` command in a child process."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "sumctl.cli", *args], capture_output=True,
                            text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sumctl {' '.join(args[:3])}... failed:\n{result.stderr[-3000:]}")
    return wall, result.stdout


def run_system(name: str, files: list[Path], source: Path, out: Path, model: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    if name == "summarize":
        wall, _ = sumctl("summarize", *map(str, files), "--out", str(out), "-q", *model)
        records = [json.loads(p.read_text()) for p in out.glob("*.summary.json")]
        busy = sum(r["timings"]["summarize_s"] for r in records)
        return {"system": name, "documents": len(files), "wall_s": round(wall, 3),
                "docs_per_s": round(len(files) / wall, 3), "workers": 1, "model_s": round(busy, 3)}
    engine, workers = {"local": ("local", None), "ray-1": ("ray", "1"), "ray-2": ("ray", "2")}[name]
    args = ["batch", str(source), "--out", str(out), "--engine", engine, "--threads", "1", "-q", *model]
    if workers:
        args += ["--workers", workers]
    wall, stdout = sumctl(*args)
    report = json.loads(stdout.strip().splitlines()[-1])
    if report["summarized"] != len(files):
        raise SystemExit(f"{name}: {report['summarized']} of {len(files)} summarized: {report}")
    records = [json.loads(p.read_text()) for p in (out / ".sumctl" / "done").glob("*.json")]
    c = sum(r["seconds"] for r in records) / len(files)
    gap = dispatch_gap(records)
    # What is left of the wall time once the documents' own work is shared out: interpreter,
    # planning, cluster and actor start-up, model loads, the idle tail.
    fixed = wall - len(files) * (c + gap) / report["workers"]
    return {"system": name, "documents": len(files), "wall_s": round(wall, 3),
            "docs_per_s": round(len(files) / wall, 3),
            "workers": report["workers"], "model_s": report["model_s"],
            "worker_s_per_doc": round(c, 4), "overhead_s_per_doc": round(gap, 4),
            "fixed_s": round(fixed, 3), "plan_s": report["plan_s"], "start_s": report["start_s"],
            "run_s": report["run_s"]}


def dispatch_gap(records: list[dict]) -> float:
    """The mean time a worker waits between the end of one document and the start of its next:
    the engine's own cost per document, in the steady state (each worker's first document,
    which waits for its start-up, is not counted)."""
    by_worker: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        end = r["finished_at"]
        by_worker.setdefault(r["worker"]["pid"], []).append((end - r["seconds"], end))
    gaps = []
    for spans in by_worker.values():
        spans.sort()
        gaps += [max(0.0, start - previous_end) for (_, previous_end), (start, _) in zip(spans, spans[1:])]
    return sum(gaps) / len(gaps) if gaps else 0.0


def estimate(rows: dict, docs: int, nodes: list[int], cores_per_node: int) -> list[dict]:
    """Ray's time for `docs` documents on N nodes of k cores, from the 2-actor run here."""
    ray2 = rows["ray-2"]
    c, o = ray2["worker_s_per_doc"], ray2["overhead_s_per_doc"]
    d = ray2["plan_s"] / ray2["documents"]  # the driver's serial share, per document
    start = ray2["fixed_s"] - ray2["plan_s"]
    out = []
    for n in nodes:
        seconds = start + docs * (c + o) / (n * cores_per_node) + docs * d
        out.append({"nodes": n, "actors": n * cores_per_node, "seconds": round(seconds, 2),
                    "docs_per_s": round(docs / seconds, 2)})
    return out


def measure(label: str, count: int, model: list[str], workdir: Path, args) -> dict:
    source = workdir / f"{label}-in"
    files = write_dialogues(args.data, source, count)
    rows = {}
    for name in ("summarize", "local", "ray-1", "ray-2"):
        rows[name] = run_system(name, files, source, workdir / f"{label}-{name}", model)
        print(f"  {label}: {name} done in {rows[name]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    local, ray2 = rows["local"], rows["ray-2"]
    return {
        "model": label, "documents": count, "rows": rows,
        "ray_overhead_s_per_doc": round(ray2["overhead_s_per_doc"] - local["overhead_s_per_doc"], 4),
        "ray_fixed_s": round(ray2["fixed_s"] - local["fixed_s"], 3),
        "estimate": estimate(rows, args.estimate_docs, args.nodes, args.cores_per_node),
    }


def print_result(result: dict, args) -> None:
    n = result["documents"]
    print(f"\n{result['model']}: {n} DialogSum dev dialogues")
    nan = float("nan")
    print(f"{'system':<12}{'wall s':>8}{'docs/s':>8}{'workers':>8}{'model s':>9}"
          f"{'worker s/doc':>13}{'overhead ms/doc':>16}{'fixed s':>9}{'cluster s':>10}")
    for name, r in result["rows"].items():
        print(f"{name:<12}{r['wall_s']:>8.2f}{r['docs_per_s']:>8.2f}{r['workers']:>8}"
              f"{r['model_s']:>9.2f}{r.get('worker_s_per_doc', nan):>13.4f}"
              f"{r.get('overhead_s_per_doc', nan) * 1000:>16.1f}{r.get('fixed_s', nan):>9.2f}"
              f"{r.get('start_s', nan):>10.2f}")
    print(f"Ray (2 actors) over local (2 workers): {result['ray_overhead_s_per_doc'] * 1000:+.1f} ms "
          f"per document, {result['ray_fixed_s']:+.1f} s fixed")
    print(f"Estimated, {args.estimate_docs} documents, {args.cores_per_node} cores per node:")
    for e in result["estimate"]:
        print(f"  {e['nodes']:>3} node(s), {e['actors']:>3} actors: {e['seconds']:>9.1f} s, "
              f"{e['docs_per_s']:>8.2f} docs/s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extractive", type=int, default=200, help="Dialogues for the extractive baseline.")
    parser.add_argument("--default", type=int, default=40,
                        help="Dialogues for the embedded default GGUF (0: skip it).")
    parser.add_argument("--data", type=Path, default=DIALOGSUM)
    parser.add_argument("--nodes", default="1,2,4,8,16", help="Node counts for the estimate.")
    parser.add_argument("--cores-per-node", type=int, default=2)
    parser.add_argument("--estimate-docs", type=int, default=10_000,
                        help="Corpus size for the estimate.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the files here.")
    args = parser.parse_args(argv)
    args.nodes = [int(n) for n in args.nodes.split(",")]
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: DialogSum dev not found (it lives in ../shared)")
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise SystemExit("Ray is not installed: pip install 'sumctl[ray]'")

    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sumctl-batch-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    from sumctl.runtime.backends.extractive import build_extractive_bundle

    extractive = workdir / "extractive-bundle"
    if not (extractive / "sumctl.json").is_file():
        build_extractive_bundle(extractive)
    results = []
    if args.extractive:
        results.append(measure("extractive", args.extractive, ["--model", str(extractive)], workdir, args))
    if args.default:
        from sumctl.runtime.default_model import default_bundle

        bundle = default_bundle(verify=False)
        if bundle.manifest.backend != "gguf":
            print("the embedded default GGUF is not installed (pip install 'sumctl[demo]'): skipped")
        else:
            results.append(measure("default", args.default, ["--model", str(bundle.path)], workdir, args))
    for result in results:
        print_result(result, args)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print_headline({"results": results, "cores": os.cpu_count(),
                    "load_average_after": round(os.getloadavg()[0], 2)})
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
