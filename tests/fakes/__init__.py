"""Fake servers that tests run the real CLI and services against."""
