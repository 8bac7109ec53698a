"""Storage: everything a node keeps on its disk, and the one worker that writes it while serving.

Records and the commit log (clean end, torn tail and corruption told apart), the replica's in-memory store
replayed from its log, hints for replicas that are down, the clock's reservation file, the data directory's
lock and pid file, and the users file. While a node serves, only the disk worker (diskworker.py) touches
these files.

May import: core.
"""
