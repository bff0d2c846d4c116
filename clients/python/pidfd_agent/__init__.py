"""A thin Python client of pidfd-agent: the generated stubs (pidfd/agent/v1, from proto/ by
`make proto`) on a channel that reconnects quickly and keeps quiet streams alive, and errors that
carry the agent's google.rpc.ErrorInfo: the errno name or domain reason, and the field, path or
handle it names. `pidfd_agent.aio` is the same over grpc.aio.

    from pidfd_agent import Agent, pb
    with Agent("unix:///run/pidfd-agent/agent.sock") as agent:
        p = agent.spawn(pb.SpawnRequest(argv=["sh", "-c", "exit 3"])).process
        print(agent.wait(pb.WaitRequest(handle=p.handle)).process.exit.code)
"""
from __future__ import annotations

import grpc
from pidfd.agent.v1 import agent_pb2 as pb
from pidfd.agent.v1 import agent_pb2_grpc

from ._channel import DEFAULT_ADDRESS, OPTIONS, method_name, tls_credentials
from ._errors import AgentError
from ._exit import describe_exit

__all__ = ["Agent", "AgentError", "describe_exit", "pb", "tls_credentials"]


class Agent:
    """One channel to one agent. Methods are the service's, in snake_case; streams are iterators.
    A HOST:PORT address with TLS takes `credentials=tls_credentials(...)`."""

    def __init__(self, address: str = DEFAULT_ADDRESS, credentials: grpc.ChannelCredentials | None = None):
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=OPTIONS)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=OPTIONS)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._stub, method_name(name))
        streaming = isinstance(method, grpc.UnaryStreamMultiCallable)

        def call(request, timeout: float | None = None):
            try:
                result = method(request, timeout=timeout)
            except grpc.RpcError as e:
                raise AgentError.of(e) from None
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
        raise AgentError.of(e) from None
    finally:
        responses.cancel()
