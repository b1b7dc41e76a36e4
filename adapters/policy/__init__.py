"""Policy storage."""
