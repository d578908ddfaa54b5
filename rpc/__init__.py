"""Server RPC transport: request header and codec, gRPC service and client pool, TLS material,
the ClientHello SNI parser and the gateway's splice and routing table."""
