"""Replication of primary-owned state into secondaries: the generic loop, one delegate per
replicated type, and mesh-gateway anti-entropy upstream."""
