"""Crossing datacenters: the gateway locator that picks a mesh gateway, the WAN dialer that
uses it, and the federation wiring that runs replication through them."""
