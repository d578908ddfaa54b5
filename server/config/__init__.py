"""Agent configuration: HCL/JSON loading, defaults, validation with errors that name file, key
and reason, and Go duration strings."""
