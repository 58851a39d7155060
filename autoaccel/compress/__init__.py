"""Compression operations on torch modules: pruning and distillation (no search logic)."""
