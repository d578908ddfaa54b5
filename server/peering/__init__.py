"""Cluster peering on the server: the token, the endpoints (generate, establish, exchange, read,
list, delete, exported services) and the importing leader routine (connect-data.md §D)."""
