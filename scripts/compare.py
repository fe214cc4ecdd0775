#!/usr/bin/env python
"""Table-2-style comparison of eval summaries and side-by-side crops. See tvt/metrics/report.py."""
import sys

from tvt.metrics.report import main

if __name__ == "__main__":
    sys.exit(main())
