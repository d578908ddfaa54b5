"""RPC endpoints: one module per Consul endpoint group. Each handler is `async (header, body) ->
(meta, body)`, used both by the gRPC service and, in-process, by the HTTP API, so routing,
blocking and consistency rules live in exactly one place."""
