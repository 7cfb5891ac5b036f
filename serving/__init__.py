"""Serving: a TF Serving gRPC client, a development server speaking the same protocol."""
