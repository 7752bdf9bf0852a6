"""The HTTP server (aiohttp): app factory, service, one handler module per API, the
committed-prefix stream, admission, metrics and HTTP errors."""
