"""Reports: report.md and the self-contained report.html, written from a merged run."""
