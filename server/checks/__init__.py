"""The agent's check runner: TCP, HTTP and alias checks of this server's own node (Consul's agent
runs these; the servers' Raft only stores the result)."""
