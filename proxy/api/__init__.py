"""The wire, transport-free: one protocol module per API, the response bodies, the
request-to-Job resolution and the error shapes. The HTTP server and batch files both
build on it and stay independent of each other."""
