"""Measures: pure functions of a model and inputs returning tensors.

No hub, no pandas, no printing.
"""
