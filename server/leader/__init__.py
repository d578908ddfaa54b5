"""Routines that run on a datacenter's Raft leader only: the supervisor that starts and cancels them
on leadership changes, TTL reaping, federation-state pruning, membership publishing and the
mesh-gateway anti-entropy adapters."""
