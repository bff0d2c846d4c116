"""What the sync and asyncio clients share: TLS credentials and channel options."""
from __future__ import annotations

import grpc

DEFAULT_ADDRESS = "unix:///run/pidfd-agent/agent.sock"

# The agent is node-local: a restart or handover lasts about 0.1 s, grpc's first backoff 1 s.
# Keepalive: a PING every 30 s on a connection with calls open keeps a quiet Watch or ReadOutput
# stream alive through proxies and load balancers that drop idle connections (often after 60 s),
# and finds a dead connection 10 s later. max_pings_without_data=0: gRPC C-core otherwise stops
# pinging after 2 pings while no data flows, which is exactly a quiet stream.
OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
]


def channel_options(options) -> list:
    """OPTIONS, each replaced by a caller's option of the same name, then the caller's others:
    `options` as grpc takes them (pairs), e.g. [("grpc.ssl_target_name_override", "node-1.example.org")]."""
    merged = dict(OPTIONS)
    merged.update(dict(options or ()))
    return list(merged.items())


def tls_credentials(cert: str, key: str, ca: str | None = None) -> grpc.ChannelCredentials:
    """TLS with this client's certificate and key (PEM files), which the agent requires on its TCP
    addresses; the agent's certificate is verified against `ca` (default: grpc's roots)."""

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))


def method_name(name: str) -> str:
    """spawn → Spawn, list_threads → ListThreads."""
    return "".join(part.title() for part in name.split("_"))
