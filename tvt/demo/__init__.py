"""The toy recipe (``toy``: every stage on the bundled samples, tiny models, a CPU in minutes) and the demo's
report (``report``). The commands are scripts/toy.py and scripts/demo.py (``make demo``)."""
