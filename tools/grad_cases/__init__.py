"""Gradient test cases, one module per op family (see tools/make_grad_cases.py)."""
from ._common import Case, single_op  # noqa: F401
