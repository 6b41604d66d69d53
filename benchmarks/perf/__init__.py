"""Speed and quality scripts, each `python -m sumctl.benchmarks.perf.<name>`, each ending with
one line of JSON; models.py makes the test models they (and the tests) need offline."""

import json

from sumctl.runtime.machine import cpu_flags, machine_line


def print_headline(headline: dict) -> None:
    """A script's last lines: the machine it ran on, then its headline figures as one JSON line.

    The kernels llama.cpp and ONNX Runtime run depend on the CPU flags: figures travel with them."""
    print(machine_line())
    headline["cpu_flags"] = cpu_flags()
    print(json.dumps(headline))
