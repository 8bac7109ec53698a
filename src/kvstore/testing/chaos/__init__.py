"""The fault-injection harness: clients, a nemesis and a checker, against a cluster of its own.

workload runs the clients and records every operation; nemesis injects crashes,
pauses and partitions; checker reads the history and says what, if anything,
was lost; run ties them together (python3 src/chaos.py).
"""
