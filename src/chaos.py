"""The fault-injection harness: python3 src/chaos.py [--duration 60] [--seed 7] [--hosts auto|netns|loopback] ..."""
from kvstore.bootstrap import run

run("kvstore.testing.chaos.run")
