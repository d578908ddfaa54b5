"""Mesh data-plane processes: the SNI-routing mesh gateway (and the service proxy to come)."""
