"""The meshfed server: wires the state machine, Raft, RPC, replication and the HTTP API together.

`agent.py` is the one place that builds a running server; every folder below holds one concept."""
