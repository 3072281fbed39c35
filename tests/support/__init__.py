"""Helpers shared by test modules that are too big to live in one test file."""
