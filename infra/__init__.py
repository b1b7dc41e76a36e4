"""The local stack of real services: install, up, down, status, logs.

Everything lives under one ignored stack directory (``.stack/`` by default);
``custody stack ...`` and the Makefile drive it. See docs/stack.md.
"""
