"""python -m kvstore.node: run one node (how an installed kvstore's launcher starts one)."""
import sys

from kvstore.node.node import main

sys.exit(main())
