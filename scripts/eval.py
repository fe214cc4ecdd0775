#!/usr/bin/env python
"""Evaluate SR images (or bicubic/TVT on a named dataset) with the Table 2 protocol. See tvt/metrics/evaluate.py."""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # absent pyiqa weights fail at once, reported as unavailable

from tvt.metrics.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
