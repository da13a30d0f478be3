"""Placeholder: being written (see docs/design.md)."""


def sliding_proxy_attention(*args, **kwargs):
    raise NotImplementedError
