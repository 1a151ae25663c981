"""Charts and HTML pages for run reports, model comparisons and plans."""
