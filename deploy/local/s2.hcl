# Server s2 of the local 3-server datacenter dc1 (see deploy/README.md).
# Start it with: meshfed agent -config-file deploy/local/s2.hcl

node_name  = "s2"
datacenter = "dc1"
server     = true

# Each server has its own loopback address, so all three keep Consul's default ports
# (HTTP 8500, server RPC 8300, Raft 8301) without clashing.
bind_addr = "127.0.1.2"
data_dir  = "/tmp/meshfed/dc1/s2"

# Every server of the datacenter. A server drops its own address from this list, which is
# why all three files can share it unchanged.
bootstrap_expect = 3
retry_join       = ["127.0.1.1", "127.0.1.2", "127.0.1.3"]

# Placeholder: the agent refuses to start until this is a real key. Replace it in all three
# files with the same output of `meshfed keygen` (deploy/README.md shows a one-liner).
encrypt = "REPLACE_WITH_OUTPUT_OF_meshfed_keygen"

log_level = "info"
