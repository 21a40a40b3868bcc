"""Benchmarks of what Agentsite's users feel; `python -m bench` prints one table.

Every figure comes with a baseline measured in the same run on the same machine; see
bench/__main__.py for the order and bench/stack.py for the processes they run against.
"""
