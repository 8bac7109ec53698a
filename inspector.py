"""Dump every replica's state and flag divergence: python3 inspector.py [--key K] [--json] [--cluster FILE]"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
from kvstore.bootstrap import run  # noqa: E402

run("kvstore.tools.inspector")
