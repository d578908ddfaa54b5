"""How one request is served: the router (here, the leader, or another datacenter), blocking
queries and the watch hub that wakes them."""
