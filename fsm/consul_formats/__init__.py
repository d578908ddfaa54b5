"""Text conventions of Consul's API that several layers share: Go durations, RFC 3339 times,
case-insensitive field names and the limits on Meta maps.

They live here, below `fsm/`, because the state machine needs them (config-entry validation) and
the server needs the same answers (config files, query strings, request bodies); one copy keeps
a duration or a Meta map from being valid on one path and refused on another. Pure functions only.
"""
