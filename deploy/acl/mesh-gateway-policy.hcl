# Policy for the mesh gateways' token (deploy/README.md, step 6). A gateway registers itself as
# a node named after its pod or host (catalog register and deregister: node write; its service:
# service write on mesh-gateway), renews its TTL check (service write), and follows the local
# servers (service read on consul) and every datacenter's gateways (node and service read).
service "mesh-gateway" {
  policy = "write"
}
service "consul" {
  policy = "read"
}
node_prefix "" {
  policy = "read"
}
# The gateways' node names: the pod names of the mesh-gateway Deployment on Kubernetes. Under
# systemd, name gateways with -node mesh-gateway-... or widen this prefix.
node_prefix "mesh-gateway-" {
  policy = "write"
}
