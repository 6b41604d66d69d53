"""Speed and quality scripts, each `python -m sumctl.benchmarks.perf.<name>`, each ending with
one line of JSON; models.py makes the test models they (and the tests) need offline."""
