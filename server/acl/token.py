"""The token a request is made with (reference/acl.md §5 of the summary).

Consul's order: `?token=`, then `X-Consul-Token`, then `Authorization: Bearer`. A request with
none of them uses the agent's `acl.tokens.default`, and without that the anonymous token. The
effective token is what travels in `RequestHeader.token`, so a follower forwarding a write hands
the leader exactly the credential the caller used (never the server's own).
"""

from __future__ import annotations

from aiohttp import web

# The anonymous token's SecretID (reference §2.4): what a request without any token resolves as.
ANONYMOUS_SECRET = "anonymous"


def token_of(request: web.Request) -> str:
    """The token the caller sent, "" when none.

    A query token must win: tools that add it explicitly expect it to override a header that a
    proxy or SDK sets by default.
    """
    token = request.query.get("token", "") or request.headers.get("X-Consul-Token", "")
    if token:
        return token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        # Bearer tokens cannot contain spaces (RFC 6750 §2.1): only the first word counts.
        words = value.split()
        return words[0] if words else ""
    return ""


def effective_token(sent: str, default_token: str) -> str:
    """What the request is checked as: the sent token, else the agent default, else anonymous."""
    return sent or default_token or ANONYMOUS_SECRET
