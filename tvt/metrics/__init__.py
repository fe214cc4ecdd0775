"""Image-quality metrics over pyiqa with the paper's Table 2 protocol (registry), folder evaluation, reports."""
from .registry import (DEFAULT_METRICS, FULL_REFERENCE, METRICS, NO_REFERENCE, TABLE2_METRICS, MetricSpec, MetricUnavailable,
                       build_metric, get_spec, lower_better, parse_metric_list)

__all__ = ["METRICS", "MetricSpec", "MetricUnavailable", "build_metric", "get_spec", "lower_better",
           "parse_metric_list", "FULL_REFERENCE", "NO_REFERENCE", "DEFAULT_METRICS",
           "TABLE2_METRICS"]
