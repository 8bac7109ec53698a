"""Paths for the tests, and the cluster fixtures (real node processes; see kvstore.testing.localcluster)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from kvstore.bootstrap import add_paths  # noqa: E402

add_paths()

import pytest  # noqa: E402

from kvstore.testing.localcluster import Cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path):
    """A fresh 4-node cluster for a test that crashes, stops or corrupts nodes."""
    c = Cluster(tmp_path / "cluster").start()
    yield c
    c.close()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory):
    """One 4-node cluster for a module's tests that leave every node running."""
    c = Cluster(tmp_path_factory.mktemp("shared")).start()
    yield c
    c.close()
