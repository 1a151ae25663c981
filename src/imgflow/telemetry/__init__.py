"""What a run tells its operators: logs, Prometheus metrics and run reports."""
