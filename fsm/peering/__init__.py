"""Cluster peering as pure state: the peering rows, their secrets and the services imported from
peers; commands, their shape checks, apply and the tables (reference connect-data.md §D)."""
