"""ACL rules and decisions, as pure code: parse a rules document, merge policies, answer a permission.

Nothing here does I/O, reads a clock or holds state between calls; the server resolves tokens to
policies and hands their rules in (reference/acl.md §4).
"""
