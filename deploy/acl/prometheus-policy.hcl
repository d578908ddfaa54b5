# Policy for Prometheus' token: a server's /metrics needs agent read (deploy/prometheus/scrape.yml
# sends the token as a bearer token). Gateways' admin ports need no token.
agent_prefix "" {
  policy = "read"
}
