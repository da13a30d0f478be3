"""Placeholder: being written (see docs/design.md)."""


def soft_threshold_attention(*args, **kwargs):
    raise NotImplementedError
