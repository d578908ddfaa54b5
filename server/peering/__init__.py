"""Cluster peering on the server: the token, the endpoints (generate, establish, exchange, read,
list, delete), the peering stream each side's leader holds and what it carries (connect-data.md
§D, peering.md §1)."""
