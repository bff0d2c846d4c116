"""The asyncio client of pidfd-agent (grpc.aio): the same methods as pidfd_agent.Agent, awaited;
streams are async iterators.

    from pidfd_agent import pb
    from pidfd_agent.aio import Agent
    async with Agent("unix:///run/pidfd-agent/agent.sock") as agent:
        p = (await agent.spawn(pb.SpawnRequest(argv=["sh", "-c", "exit 3"]))).process
        async for response in agent.watch(pb.WatchRequest(handles=[p.handle])):
            ...
"""
from __future__ import annotations

import grpc
import grpc.aio
from pidfd.agent.v1 import agent_pb2_grpc

from ._channel import DEFAULT_ADDRESS, OPTIONS, method_name
from ._errors import AgentError

__all__ = ["Agent"]


class Agent:
    """One grpc.aio channel to one agent; create it inside the event loop that uses it."""

    def __init__(self, address: str = DEFAULT_ADDRESS, credentials: grpc.ChannelCredentials | None = None):
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(address, options=OPTIONS)
        else:
            self._channel = grpc.aio.secure_channel(address, credentials, options=OPTIONS)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(self._stub, method_name(name))
        if isinstance(method, grpc.aio.UnaryStreamMultiCallable):
            return lambda request, timeout=None: _stream(method(request, timeout=timeout))

        async def call(request, timeout: float | None = None):
            try:
                return await method(request, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                raise AgentError(e.code(), e.details(), e.trailing_metadata()) from None

        return call

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "Agent":
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()


async def _stream(call):
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as e:
        raise AgentError(e.code(), e.details(), e.trailing_metadata()) from None
    finally:
        call.cancel()
