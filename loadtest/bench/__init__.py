"""JanSamvad fan-out benchmark: a lean uvloop load client, scenarios, a Markdown report and charts.

Run it with `make bench` (full) or `make bench BENCH_ARGS=--quick`; README.md in this directory explains the output.
"""
