"""The core: what the store means, with no I/O of its own beyond reading the cluster file.

Errors, the cluster file and settings, a cell and the last-write-wins rule, the hybrid logical clock, the ring
and its placement, consistency levels, the notation keys are written in, passwords and roles, and the owner of
every background task. No Thrift, no sockets, no threads.

May import: core only.
"""
