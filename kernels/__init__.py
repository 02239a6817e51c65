"""Fused Triton kernels for the engine hot spots, each beside its pure-torch reference."""
