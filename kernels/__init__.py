"""Attention operators of the seeds: a PyTorch reference and Triton kernels per operator, one module each."""

from kernels.sliding_proxy import sliding_proxy_attention
from kernels.soft_threshold import soft_threshold_attention

__all__ = ["sliding_proxy_attention", "soft_threshold_attention"]
