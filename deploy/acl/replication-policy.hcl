# Policy for the replication token of secondary datacenters (acl.tokens.replication), the one
# Consul documents: copy ACLs (acl write), write this datacenter's federation state in the
# primary (operator write), read config entries and intentions of every service.
acl      = "write"
operator = "write"
service_prefix "" {
  policy     = "read"
  intentions = "read"
}
