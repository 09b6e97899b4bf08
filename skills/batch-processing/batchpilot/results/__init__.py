"""Results: extract and validate answers, judge each result, select retries, repair, merge, summarise, export (CSV, Markdown)."""
