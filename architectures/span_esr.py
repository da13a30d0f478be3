"""Placeholder: being written (see docs/design.md)."""
