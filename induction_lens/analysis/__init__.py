"""Analysis: frame -> frame and array -> result functions. May import numpy/pandas and
`induction_lens.errors`; never models, the hub, measures or runs."""
