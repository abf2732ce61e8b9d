"""Maintenance commands: `python -m tools.update_readme` renders README.md from measured JSON."""
