"""ACL enforcement on the server: which token a request carries, what that token may do, and
what every HTTP route and state-changing RPC needs (reference/acl.md §5, §6).

The rules language and the decisions are pure code in `fsm/acl/`; this package adds what needs the
state store, the configuration and a clock: resolving a secret to an `Identity`, and checking it.
"""
