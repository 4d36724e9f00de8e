"""Reference solutions of the notebooks' exercises, one module per chapter (tested against the checkers)."""
