"""Chain adapters: one folder per chain."""
