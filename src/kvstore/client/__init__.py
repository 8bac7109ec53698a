"""The client library."""
from kvstore.client.client import Client  # noqa: F401 -- what users import
