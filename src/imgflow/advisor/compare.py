"""Run a sample under each execution model and compare what each costs.

The work is split by concept: `compare_runs` measures one setup per child
process and runs the rounds, `compare_verdicts` groups the measurements by
setup and names the leaders, and `compare_report` writes the comparison as
JSON, a table and an HTML page. This module gathers their public names.
"""

from imgflow.advisor.compare_report import (
    INTERRUPTED_NOTE,
    SCHEMA_VERSION,
    TABLE_HEADERS,
    Comparison,
    html_page,
    method_notes,
    table_rows,
    unfinished_images,
)
from imgflow.advisor.compare_runs import (
    STOP_GRACE_SECONDS,
    ComparisonInterrupted,
    Measurement,
    RunLost,
    Setup,
    measure,
    plan_setups,
    round_order,
    run_rounds,
)
from imgflow.advisor.compare_verdicts import (
    NOISE_FRACTION,
    Row,
    Verdict,
    apart,
    make_rows,
    memory_verdict,
    speed_verdict,
    unequal_work,
)

__all__ = [
    "INTERRUPTED_NOTE",
    "NOISE_FRACTION",
    "SCHEMA_VERSION",
    "STOP_GRACE_SECONDS",
    "TABLE_HEADERS",
    "Comparison",
    "ComparisonInterrupted",
    "Measurement",
    "Row",
    "RunLost",
    "Setup",
    "Verdict",
    "apart",
    "html_page",
    "make_rows",
    "measure",
    "memory_verdict",
    "method_notes",
    "plan_setups",
    "round_order",
    "run_rounds",
    "speed_verdict",
    "table_rows",
    "unequal_work",
    "unfinished_images",
]
