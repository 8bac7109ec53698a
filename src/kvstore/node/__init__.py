"""The node: the composition root that builds every object, owns every task, and stops them in order.

node.py reads the options (options.py), takes the data directory's lock, replays the logs, listens, and
shuts down on SIGTERM; `python -m kvstore.node` runs one.

May import: core, storage, net, cluster, service.
"""
