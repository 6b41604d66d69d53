"""What `sumctl serve` adds to a summary, per job, and how many jobs a second it finishes under load.

    python -m sumctl.benchmarks.perf.serve_overhead [--models extractive,default] [--files 10]
        [--load-jobs 200] [--clients 20] [--threads 2]

For each model, on the same files (the standup, then generated `Speaker: text` meetings):
- `sumctl summarize` of all the files in one process: each record's `timings` less `load_s`
  (summarize_s, faithfulness_s, minutes_s) is the work on that file, the floor a server
  cannot beat;
- a real `sumctl serve` subprocess on loopback, one job at a time over HTTP (submit; poll every
  5 ms at first, then every 2% of the wait; done): the latency a client sees, and the server's
  own seconds per job (its runner's start to end: parse, summarize, the fsynced outputs and
  the commit);
- overhead per job = mean latency - that floor's mean, on the same files;
- under load: `--load-jobs` jobs submitted by `--clients` threads at once, jobs/s from the
  first submit to the last job done (the default model gets a tenth of them: each takes
  seconds).
The last line printed is one JSON object with the headline figures, after the CPU's flags.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sumctl.runtime.backends.extractive import build_extractive_bundle
from sumctl.benchmarks.perf.kit import print_headline

STANDUP = Path(__file__).resolve().parents[2] / "examples" / "standup.vtt"
_WORDS = ("budget release login tests docs design roadmap customer launch pricing hiring server "
          "database migration security audit invoice onboarding dashboard latency").split()
_CLI = [sys.executable, "-m", "sumctl.cli"]


def write_meetings(folder: Path, count: int) -> list[Path]:
    """The standup, then `count - 1` generated meetings of 12 turns."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / STANDUP.name]
    files[0].write_bytes(STANDUP.read_bytes())
    rng = random.Random(0)
    for i in range(1, count):
        lines = [f"Alice: Meeting {i} starts now."]
        for _ in range(12):
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 16)))
            lines.append(f"{rng.choice(('Alice', 'Bob', 'Carol'))}: We talked about {words}.")
        files.append(folder / f"meeting-{i:03d}.txt")
        files[-1].write_text("\n".join(lines) + "\n")
    return files


def model_args(model: str | None) -> list[str]:
    return ["--model", model] if model else []


def summarize_cli(files: list[Path], model: str | None, threads: int, out: Path) -> dict:
    started = time.perf_counter()
    result = subprocess.run([*_CLI, "summarize", *map(str, files), *model_args(model), "--threads",
                             str(threads), "--out", str(out), "--quiet"],
                            capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"sumctl summarize failed:\n{result.stderr[-3000:]}")
    seconds = {}
    for path in files:
        record = json.loads((out / f"{path.stem}.summary.json").read_text())
        # Everything but the load: the summary, its faithfulness check, the minutes.
        seconds[path.name] = sum(v for k, v in record["timings"].items() if k != "load_s")
    return {"wall_s": wall, "work_s": seconds}


class Server:
    """`sumctl serve` on a free loopback port, its log in the state folder."""

    def __init__(self, state: Path, model: str | None, threads: int):
        import httpx

        state.mkdir(parents=True)
        self.log_path = state.parent / f"{state.name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [*_CLI, "serve", "--port", "0", "--state", str(state), "--threads", str(threads),
                 "--max-queue", "100000", *model_args(model)],
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 300  # the default model may be built on first use
        while not (found := re.search(r"listening on (http://\S+?:\d+)", self.log())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise SystemExit(f"sumctl serve did not start:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        self.client = httpx.Client(base_url=found.group(1), timeout=600)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def submit(self, client, path: Path) -> str:
        response = client.post("/v1/jobs", files={"file": (path.name, path.read_bytes())})
        if response.status_code != 202:
            raise SystemExit(f"submit {path.name}: {response.status_code} {response.text}")
        return response.json()["id"]

    def wait(self, job_id: str) -> dict:
        """Poll until the job ends: every 5 ms at first, then every 2% of the time waited (at
        most 50 ms). A fixed 5 ms poll of a job that takes seconds measures the polls: each one
        takes CPU from the model's threads on a small machine."""
        started = time.perf_counter()
        while True:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("done", "failed"):
                if job["status"] == "failed":
                    raise SystemExit(f"job {job_id} failed: {job['error']}")
                return job
            time.sleep(min(0.05, max(0.005, (time.perf_counter() - started) / 50)))

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=120)


def one_at_a_time(server: Server, files: list[Path]) -> dict:
    latency, seconds = {}, {}
    for path in files:
        started = time.perf_counter()
        job = server.wait(server.submit(server.client, path))
        latency[path.name] = time.perf_counter() - started
        seconds[path.name] = job["seconds"]
    return {"latency_s": latency, "job_s": seconds}


def under_load(server: Server, files: list[Path], jobs: int, clients: int) -> dict:
    import httpx

    work = [files[i % len(files)] for i in range(jobs)]

    def submit(part: list[Path]) -> list[str]:
        with httpx.Client(base_url=server.client.base_url, timeout=600) as client:
            return [server.submit(client, path) for path in part]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        ids = [i for part in pool.map(submit, [work[k::clients] for k in range(clients)])
               for i in part]
    submitted = time.perf_counter() - started
    for job_id in ids:
        server.wait(job_id)
    elapsed = time.perf_counter() - started
    return {"jobs": len(ids), "submit_s": submitted, "wall_s": elapsed,
            "jobs_per_s": len(ids) / elapsed}


def measure(name: str, model: str | None, files: list[Path], load_jobs: int, clients: int,
            threads: int, tmp: Path) -> dict:
    direct = summarize_cli(files, model, threads, tmp / f"{name}-summaries")
    server = Server(tmp / f"{name}-state", model, threads)
    try:
        server.wait(server.submit(server.client, files[0]))  # warm: the first job pays once
        sequential = one_at_a_time(server, files)
        load = under_load(server, files, load_jobs, clients)
    finally:
        server.stop()
    floor = statistics.mean(direct["work_s"].values())
    latency = statistics.mean(sequential["latency_s"].values())
    job_s = statistics.mean(sequential["job_s"].values())
    return {"summarize_ms_per_file": floor * 1000, "serve_latency_ms_per_job": latency * 1000,
            "serve_job_ms": job_s * 1000, "overhead_ms_per_job": (latency - floor) * 1000,
            "overhead_in_server_ms_per_job": (job_s - floor) * 1000,
            "summarize_files_per_s": len(files) / sum(direct["work_s"].values()),
            "summarize_process_s": direct["wall_s"], "jobs_per_s_under_load": load["jobs_per_s"],
            "load_jobs": load["jobs"], "load_submit_s": load["submit_s"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="extractive,default",
                        help="comma-separated: extractive, default (the embedded default)")
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--load-jobs", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - {"extractive", "default"}
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)} (use extractive, default)")

    with tempfile.TemporaryDirectory(prefix="sumctl-serve-bench-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("SUMCTL_HOME", str(tmp / "home"))
        files = write_meetings(tmp / "in", args.files)
        results = {}
        for name in models:
            model = str(build_extractive_bundle(tmp / "extractive").path) \
                if name == "extractive" else None
            jobs = args.load_jobs if name == "extractive" else max(2, args.load_jobs // 10)
            results[name] = measure(name, model, files, jobs, args.clients, args.threads, tmp)

    print(f"{args.files} files (the standup + generated meetings), {args.threads} thread(s), "
          f"{os.cpu_count()} cores; load: {args.clients} clients")
    print(f"{'model':<12}{'summarize ms':>14}{'serve ms':>10}{'overhead ms':>13}"
          f"{'in server ms':>14}{'jobs/s load':>13}{'files/s direct':>16}")
    for name, r in results.items():
        print(f"{name:<12}{r['summarize_ms_per_file']:>14.1f}{r['serve_latency_ms_per_job']:>10.1f}"
              f"{r['overhead_ms_per_job']:>13.1f}{r['overhead_in_server_ms_per_job']:>14.1f}"
              f"{r['jobs_per_s_under_load']:>13.2f}{r['summarize_files_per_s']:>16.2f}")
    headline = {"files": args.files, "clients": args.clients, "threads": args.threads}
    for name, r in results.items():
        for key, value in r.items():
            headline[f"{name}_{key}"] = round(value, 3) if isinstance(value, float) else value
    print_headline(headline)
    return headline


if __name__ == "__main__":
    main(sys.argv[1:])
