"""Reports: report.md, the self-contained report.html, and the CSV/Markdown exports."""
