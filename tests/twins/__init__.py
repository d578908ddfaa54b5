"""In-memory twins of the transport behind `meshfed.server.endpoints.ports`, for unit tests."""
