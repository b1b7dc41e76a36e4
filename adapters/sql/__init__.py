"""SQL backends chosen by URL: sqlite:///path (embedded default) or postgresql://..."""
