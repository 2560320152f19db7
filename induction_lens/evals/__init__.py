"""Evaluators: one module per measurement family, each returning a tidy long-form DataFrame.

Schema shared by every evaluator (``ARCHITECTURE.md``): ``run, step, tokens, layer, head,
metric, value`` plus ``position`` where a value belongs to a context index. Model-level metrics
have null ``layer``/``head``.
"""
