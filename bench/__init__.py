"""modelreg's benchmark suite (issue 6): run it with `make bench` or `make bench-peers`.

`python -m bench.run` is the entry point; `bench/validate.py` also runs on its own. The method
and the latest figures are in docs/performance.md.
"""
