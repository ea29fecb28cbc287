"""`make bench`: the streaming benchmark (see bench/streams.py)."""
