"""ProposalFlow's benchmark: the five services against a raw aiokafka chain on the same broker.

`make bench` (or `python -m bench`) starts the suite as processes on SQLite, drives proposals through
submitted → filed → assigned → progress → notified → audited, and prints how it compares with the
baseline. See docs/performance.md for what is measured and how to read it.
"""
