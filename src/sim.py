"""The membership simulation: python3 src/sim.py [--nodes 100,1000] [--seed 1] (see kvstore/testing/simulation.py)."""
from kvstore.bootstrap import run

run("kvstore.testing.simulation")
