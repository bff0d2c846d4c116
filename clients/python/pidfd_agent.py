"""A thin Python client of pidfd-agent: the generated stubs (pidfd/agent/v1, from proto/ by
`make proto`) on a channel that reconnects quickly, and errors that carry the agent's
google.rpc.ErrorInfo: the errno name or domain reason, and the field, path or handle it names.

    from pidfd_agent import Agent, pb
    with Agent("unix:///run/pidfd-agent/agent.sock") as agent:
        p = agent.spawn(pb.SpawnRequest(argv=["sh", "-c", "exit 3"])).process
        print(agent.wait(pb.WaitRequest(handle=p.handle)).process.exit.code)
"""
from __future__ import annotations

import grpc
from google.rpc import status_pb2
from pidfd.agent.v1 import agent_pb2 as pb
from pidfd.agent.v1 import agent_pb2_grpc

__all__ = ["Agent", "AgentError", "pb", "tls_credentials"]

_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class AgentError(Exception):
    """A failed call: the gRPC status code plus the agent's reason (ENOENT, PROCESS_EXITED, ...)."""

    def __init__(self, e: grpc.RpcError):
        self.code: grpc.StatusCode = e.code()
        self.details: str = e.details() or ""
        self.reason = ""
        self.info: dict[str, str] = {}
        for key, value in e.trailing_metadata() or ():
            if key != "grpc-status-details-bin":
                continue
            for detail in status_pb2.Status.FromString(value).details:
                if detail.type_url == _ERROR_INFO:
                    info = status_pb2.ErrorInfo.FromString(detail.value)
                    self.reason, self.info = info.reason, dict(info.metadata)
        super().__init__(f"{self.code.name}: {self.details}")


def tls_credentials(cert: str, key: str, ca: str | None = None) -> grpc.ChannelCredentials:
    """TLS with this client's certificate and key (PEM files), which the agent requires on its TCP
    addresses; the agent's certificate is verified against `ca` (default: grpc's roots)."""

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))


class Agent:
    """One channel to one agent. Methods are the service's, in snake_case; streams are iterators.
    A HOST:PORT address with TLS takes `credentials=tls_credentials(...)`."""

    def __init__(self, address: str = "unix:///run/pidfd-agent/agent.sock", credentials: grpc.ChannelCredentials | None = None):
        # The agent is node-local: a restart or handover lasts about 0.1 s, grpc's backoff 1 s.
        options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 2000)]
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=options)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._stub, "".join(part.title() for part in name.split("_")))
        streaming = isinstance(method, grpc.UnaryStreamMultiCallable)

        def call(request, timeout: float | None = None):
            try:
                result = method(request, timeout=timeout)
            except grpc.RpcError as e:
                raise AgentError(e) from None
            return _stream(result) if streaming else result

        return call

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _stream(responses):
    try:
        yield from responses
    except grpc.RpcError as e:
        raise AgentError(e) from None
    finally:
        responses.cancel()
