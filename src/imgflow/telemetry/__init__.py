"""Run telemetry for operators: logs, Prometheus metrics and run reports."""

# Metrics are served on loopback only unless the operator names an address.
DEFAULT_METRICS_ADDRESS = "127.0.0.1"
