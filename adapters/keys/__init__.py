"""Key management adapters."""
