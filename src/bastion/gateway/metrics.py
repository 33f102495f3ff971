"""Prometheus metrics of one gateway, in the app's own registry (two apps in one process do not mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class GatewayMetrics:
    """The counters and histograms ``/metrics`` exposes (names start with ``bastion_gateway_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("bastion_gateway_requests", "Requests answered, by route and HTTP status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("bastion_gateway_request_seconds", "Time to answer, by route", ["route"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.decisions = Counter("bastion_gateway_decisions", "Policy decisions on inference requests",
                                 ["decision"], registry=self.registry)
        self.flags = Counter("bastion_gateway_detector_flags", "Instances a detector flagged", ["detector"],
                             registry=self.registry)
        self.alerts = Counter("bastion_gateway_extraction_alerts", "Extraction-monitor alerts, by signal",
                              ["signal"], registry=self.registry)
        self.throttled = Counter("bastion_gateway_throttled", "Requests refused by a limit", ["scope"],
                                 registry=self.registry)
        self.guard_verdicts = Counter("bastion_gateway_guard_verdicts", "Text-guard verdicts, by route (prompt, "
                                      "output) and whether the text was flagged", ["route", "flagged"],
                                      registry=self.registry)
        self.pending_reviews = Gauge("bastion_gateway_pending_reviews", "Review cases opened by this process and "
                                     "not yet decided through it", registry=self.registry)
