"""Image-quality metrics over pyiqa with the paper's Table 2 protocol (registry), folder evaluation, tables."""
from .registry import (METRICS, TABLE2_METRICS, MetricSpec, MetricUnavailable, build_metric, get_spec, lower_better,
                       parse_metric_list)

__all__ = ["METRICS", "MetricSpec", "MetricUnavailable", "build_metric", "get_spec", "lower_better",
           "parse_metric_list", "TABLE2_METRICS"]
