"""authrelay's benchmarks: its cost against the bare app and against what users write instead.

Run ``python -m benchmarks`` (``make bench``) for the full run, ``--quick`` for a smoke
run. Every figure is a ratio measured side by side in one run; see ``docs/performance.md``.
"""
