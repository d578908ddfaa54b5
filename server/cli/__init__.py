"""The `meshfed` command line: argument parsing, agent flags, and the process launcher behind
`meshfed demo` and the integration tests."""
