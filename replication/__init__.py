"""Replication of primary-owned state into secondaries: the shared retry loop (`loop.py`), the
index-diff round with one delegate per replicated type, and mesh-gateway anti-entropy upstream."""
