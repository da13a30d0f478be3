"""Attention operators of the seeds: a PyTorch reference and Triton kernels per operator, one module each,
and the registry (:mod:`kernels.registry`) through which models call them and ``complexity`` counts them."""

from kernels.registry import OPERATORS, Operator, counting, operator, register_operator
from kernels.sliding_proxy import sliding_proxy_attention
from kernels.soft_threshold import soft_threshold_attention

__all__ = [
    "OPERATORS",
    "Operator",
    "counting",
    "operator",
    "register_operator",
    "sliding_proxy_attention",
    "soft_threshold_attention",
]
