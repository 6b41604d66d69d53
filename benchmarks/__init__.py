"""Everything that measures: the design card's benchmark module.

eval/ holds evaluation data and metrics (it imports only the runtime), bench/ is `sumctl bench`,
and perf/ the speed and quality scripts (`python -m sumctl.benchmarks.perf.<script>`) with the
test models they make."""
