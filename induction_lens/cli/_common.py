"""What the subcommands share: printing a frame.

Level: ``cli``.
"""

import pandas as pd


def print_frame(frame: pd.DataFrame) -> None:
    """Print a frame whole (up to 500 rows), without its index."""
    with pd.option_context("display.max_rows", 500, "display.width", 160,
                           "display.max_columns", 30):
        print(frame.to_string(index=False))
