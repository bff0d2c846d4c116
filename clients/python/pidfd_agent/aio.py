"""The asyncio client of pidfd-agent (grpc.aio): the same methods as pidfd_agent.Agent, awaited;
streams are async iterators; spawn and spawn_batch give each request a request_id and retry under
it, as the sync client's.

    from pidfd_agent import pb
    from pidfd_agent.aio import Agent
    async with Agent("unix:///run/pidfd-agent/agent.sock") as agent:
        p = (await agent.spawn(pb.SpawnRequest(argv=["sh", "-c", "exit 3"]))).process
        async for response in agent.watch(pb.WatchRequest(handles=[p.handle])):
            ...
"""
from __future__ import annotations

import asyncio
import time

import grpc
import grpc.aio
from pidfd.agent.v1 import agent_pb2 as pb
from pidfd.agent.v1 import agent_pb2_grpc

from ._channel import DEFAULT_ADDRESS, channel_options, method_name
from ._errors import AgentError
from ._list import PAGE_TOKEN_EXPIRED, first_page
from ._retry import DEFAULT_RETRY, Retry, Schedule, request_ids_of, with_request_ids

__all__ = ["Agent"]

_CLIENT_POLICY = object()


class Agent:
    """One grpc.aio channel to one agent; create it inside the event loop that uses it. `options`
    and `retry` as for pidfd_agent.Agent."""

    def __init__(self, address: str = DEFAULT_ADDRESS, credentials: grpc.ChannelCredentials | None = None, options=None, retry: Retry | None = DEFAULT_RETRY):
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(address, options=channel_options(options))
        else:
            self._channel = grpc.aio.secure_channel(address, credentials, options=channel_options(options))
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._retry = retry
        # Set by close(): a call waiting out a retry backoff ends then, with its last failure.
        self._closing = asyncio.Event()
        # Open streams: grpc.aio's close cancels only calls it finds in a task of their own, which
        # a stream read in the caller's task is not (grpcio 1.51: it went on, past the close).
        self._streams: set = set()

    async def spawn(self, request: pb.SpawnRequest, timeout: float | None = None, retry=_CLIENT_POLICY, auto_request_id: bool = True) -> pb.SpawnResponse:
        """As pidfd_agent.Agent.spawn."""
        return await self._unary("Spawn", with_request_ids(request, auto_request_id), timeout, self._retry if retry is _CLIENT_POLICY else retry)

    async def spawn_batch(self, request: pb.SpawnBatchRequest, timeout: float | None = None, retry=_CLIENT_POLICY, auto_request_id: bool = True) -> pb.SpawnBatchResponse:
        """As pidfd_agent.Agent.spawn_batch."""
        return await self._unary("SpawnBatch", with_request_ids(request, auto_request_id), timeout, self._retry if retry is _CLIENT_POLICY else retry)

    async def list_all(self, request: pb.ListRequest | None = None, timeout: float | None = None, retry: Retry | None = None) -> pb.ListResponse:
        """As pidfd_agent.Agent.list_all."""
        page = first_page(request)
        try:
            return await self._list_pages(page, timeout, retry)
        except AgentError as e:
            if e.reason != PAGE_TOKEN_EXPIRED:
                raise
        return await self._list_pages(page, timeout, retry)

    async def _list_pages(self, page: pb.ListRequest, timeout: float | None, retry: Retry | None) -> pb.ListResponse:
        page.page_token = ""
        listed = await self._unary("List", page, timeout, retry)
        token = listed.next_page_token
        while token:
            page.page_token = token
            more = await self._unary("List", page, timeout, retry)
            # The agent never sends an empty page that goes on: such a server would have this loop forever.
            if not more.processes and more.next_page_token:
                raise RuntimeError("List: an empty page with a next_page_token")
            listed.processes.extend(more.processes)
            token = more.next_page_token
        listed.next_page_token = ""
        return listed

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        rpc = method_name(name)
        method = getattr(self._stub, rpc)
        if isinstance(method, grpc.aio.UnaryStreamMultiCallable):
            return lambda request, timeout=None: _stream(method(request, timeout=timeout), rpc, self._closing, self._streams)
        return lambda request, timeout=None, retry=None: self._unary(rpc, request, timeout, retry)

    async def _unary(self, rpc: str, request, timeout: float | None, retry: Retry | None):
        method = getattr(self._stub, rpc)
        schedule = Schedule(retry, None if timeout is None else time.monotonic() + timeout)
        while True:
            sent_open = not self._closing.is_set()
            cancels = _cancels()
            try:
                return await method(request, timeout=schedule.remaining())
            except grpc.aio.AioRpcError as e:
                error = AgentError.of(e, rpc, request)
            except asyncio.CancelledError:
                # grpc.aio's close cancels the calls in flight, which raise what a cancelled task
                # raises: only the task's own cancel is one.
                if not (sent_open and self._closing.is_set()) or _cancels() > cancels:
                    raise
                raise AgentError.cut_by_close(rpc, *request_ids_of(request)) from None
            # As the sync client's: a call in flight at the close may have run.
            if sent_open and self._closing.is_set():
                error = error.closed_in_flight()
                if error.client_closed:
                    raise error
            delay = schedule.delay_after(error)
            if delay is None:
                raise error
            # As the sync client's: closed before or during the backoff, the last failure.
            if await self._closed_within(delay):
                raise error.ended_by_close()

    async def _closed_within(self, delay: float) -> bool:
        try:
            await asyncio.wait_for(self._closing.wait(), delay)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        """As pidfd_agent.Agent.close: a call in flight fails at once, UNAVAILABLE marked
        `client_closed`, not with the CancelledError grpc.aio ends it with; an open stream (watch,
        read_output) ends with AgentError CANCELLED marked `client_closed`."""
        self._closing.set()
        for call in list(self._streams):
            call.cancel()
        await self._channel.close()

    async def __aenter__(self) -> "Agent":
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.close()


def _cancels() -> int:
    """How many cancels of this task are pending (Python 3.11 counts them; before, 0: a cancel at
    the close is taken for the close's). Compared before and after a call: a count left above 0 by
    a cancel the task caught earlier (without uncancel) is not this call's."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return 0 if cancelling is None else cancelling()


async def _stream(call, rpc: str, closing: asyncio.Event, streams: set):
    cancels = _cancels()
    streams.add(call)
    try:
        async for response in call:
            yield response
    except grpc.aio.AioRpcError as e:
        raise AgentError.of(e, rpc) from None
    except asyncio.CancelledError:
        # The Agent's close cancels the stream, as it does a unary call: no cancel of the task.
        if not closing.is_set() or _cancels() > cancels:
            raise
        raise AgentError.stream_closed(rpc) from None
    finally:
        streams.discard(call)
        call.cancel()
