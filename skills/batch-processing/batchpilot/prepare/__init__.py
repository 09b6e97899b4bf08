"""Prepare: items, templates, schema rules, request building, the plan, and the job that ties them together."""
