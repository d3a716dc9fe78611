"""gRPC transport: mutual TLS, caller identity, serialization, the peer exchange and thin servicers."""
