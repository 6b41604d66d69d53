"""`sumctl bench`: local bundles and cloud outputs scored side by side on one data set, each
local system in its own worker process (worker.py) so its memory is its own, written up as
report.md, report.json, per_document.csv and plots.

Public: BenchConfig, BenchResult and run_bench (runner.py). Named here, imported on use: the
worker process imports this package, and a measurement of its memory should not include the
runner's imports.
"""

__all__ = ["BenchConfig", "BenchResult", "run_bench"]


def __getattr__(name):
    if name in __all__:
        from sumctl.benchmarks.bench import runner

        return getattr(runner, name)
    raise AttributeError(name)
