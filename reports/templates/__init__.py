"""Jinja2 report templates (importable as ``kdanalysis._templates``)."""
