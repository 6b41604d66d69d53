"""The Ray engine: Ray Data on an existing cluster, or on a local one that sumctl starts.

The planned jobs become a dataset (`ray.data.from_items`, one small JSON row per transcript:
the driver has already listed and hashed the sources), and `map_batches` runs them over a
fixed pool of actors (`ActorPoolStrategy`), each of which loads one Summarizer once, with
`num_cpus` = its threads, so actors x threads fits the CPUs Ray reports. Each actor writes its
transcripts' outputs and done-records itself (jobs.Worker.run); the driver only collects one
result row per transcript.

- The bundle reaches the actors by path: the driver resolves `--model` to an absolute path, and
  every node must see the same bundle there (a shared filesystem, or the same copy on each
  node). Each actor checks the manifest hash it loads against the driver's, so a node with
  another bundle fails instead of writing other summaries.
- An actor that dies is restarted (`max_restarts=-1`) and its task retried
  (`max_task_retries=-1`); a retried job that the dead actor had finished is reported from its
  done-record instead of being summarized twice, and one that it had not is written again
  under the same names.
- A local cluster that sumctl starts itself binds to loopback only, with no dashboard: a
  transcript batch has nothing to expose to the network. Ray 2.5x needs more than
  `_node_ip_address="127.0.0.1"` for that (see LOOPBACK_ENV), and connect() checks the result.

Ray is imported only here, and only when this engine runs: `pip install 'sumctl[ray]'`.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import time
import warnings
from typing import Iterator

from sumctl.runtime.errors import SumctlError
from sumctl.runtime.batch.jobs import PlannedJob, Result, Worker
from sumctl.runtime.batch.options import BatchOptions
from sumctl.runtime.batch.storage import Destination
from sumctl.runtime.machine import usable_cores
from sumctl.runtime.jsonout import strict_dumps

RAY_HINT = "pip install 'sumctl[ray]'"
LOOPBACK = "127.0.0.1"
# More blocks than actors, so that a slow transcript does not hold back a block of others.
BLOCKS_PER_ACTOR = 16


# Ray (2.5x) turns `_node_ip_address="127.0.0.1"` into this machine's network address, and its
# servers then listen on every interface. Only with this variable set, before Ray is imported,
# does a node take 127.0.0.1 as its address and bind there (and its children inherit it). The
# name says Windows and macOS, but it is the switch that Ray reads on every platform.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def import_ray(*, loopback: bool = False):
    """The ray module, or a one-line error that says how to install it. With `loopback`, the
    clusters that this process starts stay on 127.0.0.1 (see LOOPBACK_ENV)."""
    if loopback:
        os.environ.update(LOOPBACK_ENV)
    try:
        import ray
        import ray.data  # noqa: F401  (ray without its data extra has no ray.data)
    except ModuleNotFoundError:
        raise SumctlError(f"--engine ray needs Ray Data: {RAY_HINT}") from None
    return ray


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    return host in ("localhost", "::1") or host.startswith(("127.", "::ffff:127."))


class RayWorker:
    """The callable class that map_batches runs in each actor: one Worker, loaded once."""

    def __init__(self, options: dict, dest: dict):
        import ray

        info = {"node_id": ray.get_runtime_context().get_node_id()}
        self.worker = Worker(BatchOptions.from_dict(options), Destination(**dest),
                             engine="ray", info=info)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        results = [strict_dumps(self.worker.run(PlannedJob.from_json(str(text))).to_dict())
                   for text in batch["job"]]
        return {"result": np.array(results, dtype=object)}


def connect(ray, address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at `address`, or start a local one bound to loopback. Returns
    whether this call started Ray (and so should shut it down). A Ray already initialised in
    this process (a notebook, a test session) is used as it is."""
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address)
        else:
            # "local": always a new cluster of our own, never one found on this machine.
            ray.init(address="local", num_cpus=num_cpus or usable_cores(),
                     include_dashboard=False, _node_ip_address=LOOPBACK)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise SumctlError(f"cannot connect to {where} ({' '.join(str(e).split())[:300]})") from None
    if not address:
        # Checked, not assumed: a local cluster that is reachable from the network is refused.
        exposed = [n["NodeManagerAddress"] for n in ray.nodes()
                   if not is_loopback(n.get("NodeManagerAddress", ""))]
        if exposed:
            ray.shutdown()
            raise SumctlError(f"the local Ray cluster took the network address {exposed[0]}, not "
                              f"127.0.0.1 (import Ray after sumctl, or set "
                              f"{' '.join(f'{k}={v}' for k, v in LOOPBACK_ENV.items())})")
    return True


def driver_host(address: str | None) -> str | None:
    """The host of a cluster address (`10.0.0.5:6379`, `ray://h:10001`), or None for `auto`."""
    if not address or address in ("auto", "local"):
        return None
    return address.split("://")[-1].rsplit(":", 1)[0]


def _reason(error: BaseException) -> str:
    """One line for a failed Ray job: a SumctlError raised in a worker (a bundle that does not
    load there) as it is, anything else with Ray's first line."""
    seen = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SumctlError):
            return str(e)
        stack += [c for c in (getattr(e, "cause", None), e.__cause__, e.__context__)
                  if isinstance(c, BaseException)]
    # An actor that died in its constructor carries the worker's traceback only as text.
    text = str(error)
    found = re.findall(r"^sumctl\.\S*Error: (.+)$", text, re.M)
    if found:
        return found[-1].strip()
    first = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
    return f"the Ray job failed: {first.strip()[:300]}"


def plan_actors(cpus: float, workers: int | None, threads: int | None, jobs: int) -> tuple[int, int]:
    """(actors, threads per actor) so that actors x threads fits the CPUs Ray reports (a fixed
    pool of actors that cannot all be placed would wait for them)."""
    cpus = max(1, int(cpus))
    threads = min(threads or (1 if workers is None else max(1, cpus // workers)), cpus)
    actors = min(workers or cpus, max(1, cpus // threads))
    return max(1, min(actors, jobs)), threads


def run_ray(jobs: list[PlannedJob], options: BatchOptions, dest: Destination, *,
            address: str | None = None, workers: int | None = None,
            threads: int | None = None, meta: dict | None = None) -> Iterator[Result]:
    """Each job's result, as Ray Data returns them (Ray draws its own progress bars). `meta`
    receives the actors and threads chosen, the cluster's CPUs and nodes, and `ready_at`, the
    moment the cluster was reached."""
    host = driver_host(address)
    # A local cluster, or one whose nodes run on loopback (this driver must then be on loopback
    # too, or Ray looks for a raylet on this machine's network address).
    ray = import_ray(loopback=address is None or (host is not None and is_loopback(host)))
    started = connect(ray, address)
    if meta is not None:
        meta["ready_at"] = time.perf_counter()
    try:
        from ray.data import ActorPoolStrategy

        actors, threads = plan_actors(ray.cluster_resources().get("CPU", 1), workers, threads,
                                      len(jobs))
        if meta is not None:
            meta.update(workers=actors, threads=threads, cpus=ray.cluster_resources().get("CPU", 0),
                        nodes=sum(1 for n in ray.nodes() if n.get("Alive")))
        options = BatchOptions.from_dict({**options.to_dict(), "threads": threads})
        dataset = ray.data.from_items([{"job": job.to_json()} for job in jobs],
                                      override_num_blocks=min(len(jobs), actors * BLOCKS_PER_ACTOR))
        restarts = {}
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(dataset.map_batches).parameters.values()):
            # Ray Data's defaults since 2.x; explicit, since exactly-once relies on them.
            restarts = {"max_restarts": -1, "max_task_retries": -1}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            dataset = dataset.map_batches(
                RayWorker, fn_constructor_kwargs={"options": options.to_dict(),
                                                  "dest": {"fs_uri": dest.fs_uri, "path": dest.path}},
                batch_size=1, compute=ActorPoolStrategy(size=actors), num_cpus=threads,
                **restarts)
        try:
            for row in dataset.iter_rows():
                yield Result.from_dict(json.loads(row["result"]))
        except SumctlError:
            raise
        except Exception as e:  # Ray's wrappers around a worker's error
            raise SumctlError(_reason(e)) from None
    finally:
        if started:
            ray.shutdown()
