"""Speed and quality scripts, each `python -m sumctl.benchmarks.perf.<name>`, each ending with
one line of JSON; kit.py holds what they share (the read bandwidth their bounds divide by, the
child-process runner, the JSON headline); models.py makes the test models they (and the tests)
need offline."""
