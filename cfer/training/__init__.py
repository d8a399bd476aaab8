"""Placeholder; the lead fills in re-exports."""
