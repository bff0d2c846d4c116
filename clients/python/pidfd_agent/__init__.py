"""A thin Python client of pidfd-agent: the generated stubs (pidfd/agent/v1, from proto/ by
`make proto`) on a channel that reconnects quickly and keeps quiet streams alive, and errors that
carry the agent's google.rpc.ErrorInfo: the errno name or domain reason, and the field, path or
handle it names. `pidfd_agent.aio` is the same over grpc.aio.

    from pidfd_agent import Agent, pb
    with Agent("unix:///run/pidfd-agent/agent.sock") as agent:
        p = agent.spawn(pb.SpawnRequest(argv=["sh", "-c", "exit 3"])).process
        print(agent.wait(pb.WaitRequest(handle=p.handle)).process.exit.code)

spawn and spawn_batch send each request with a request_id (a random one where the caller gave
none), so that the agent starts a process at most once for it; they retry a dropped connection or
a handover under that same id (`retry`). Other calls are retried only when asked (`retry=`), and
only where is_retryable says it is safe.
"""
from __future__ import annotations

import threading
import time

import grpc
from pidfd.agent.v1 import agent_pb2 as pb
from pidfd.agent.v1 import agent_pb2_grpc

from ._channel import DEFAULT_ADDRESS, channel_options, method_name, tls_credentials
from ._errors import AgentError
from ._exit import describe_exit
from ._list import MAX_LIST_PAGE_SIZE, PAGE_TOKEN_EXPIRED, first_page
from ._retry import DEFAULT_RETRY, Retry, Schedule, is_retryable, new_request_id, with_request_ids

__all__ = ["Agent", "AgentError", "DEFAULT_RETRY", "MAX_LIST_PAGE_SIZE", "PAGE_TOKEN_EXPIRED", "Retry", "describe_exit", "is_retryable", "new_request_id", "pb", "tls_credentials"]

_CLIENT_POLICY = object()  # spawn's and spawn_batch's default: the Agent's retry policy


class Agent:
    """One channel to one agent. Methods are the service's, in snake_case; streams are iterators.
    A HOST:PORT address with TLS takes `credentials=tls_credentials(...)`. `options` are grpc
    channel options, added to the client's own or replacing them by name (e.g.
    ("grpc.ssl_target_name_override", NAME) to dial by IP an agent whose certificate names NAME).
    `retry` is the policy of spawn and spawn_batch (None: never retry)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, credentials: grpc.ChannelCredentials | None = None, options=None, retry: Retry | None = DEFAULT_RETRY):
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=channel_options(options))
        else:
            self._channel = grpc.secure_channel(address, credentials, options=channel_options(options))
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._retry = retry
        # Set by close(): a call waiting out a retry backoff ends then, with its last failure.
        self._closing = threading.Event()

    def spawn(self, request: pb.SpawnRequest, timeout: float | None = None, retry=_CLIENT_POLICY, auto_request_id: bool = True) -> pb.SpawnResponse:
        """Spawn with the request's request_id, or a new random one (not with auto_request_id=False),
        which a failure's AgentError carries as `request_id`: resend with it to retry safely."""
        return self._unary("Spawn", with_request_ids(request, auto_request_id), timeout, self._retry if retry is _CLIENT_POLICY else retry)

    def spawn_batch(self, request: pb.SpawnBatchRequest, timeout: float | None = None, retry=_CLIENT_POLICY, auto_request_id: bool = True) -> pb.SpawnBatchResponse:
        """SpawnBatch, each item with a request_id as in spawn (AgentError.request_ids)."""
        return self._unary("SpawnBatch", with_request_ids(request, auto_request_id), timeout, self._retry if retry is _CLIENT_POLICY else retry)

    def list_all(self, request: pb.ListRequest | None = None, timeout: float | None = None, retry: Retry | None = None) -> pb.ListResponse:
        """Every process the request's filters match, a page at a time (its page_size, else
        MAX_LIST_PAGE_SIZE), as one ListResponse: the processes of all pages, and the first page's
        sequence, after which a Watch misses no change, those made while paging included. timeout
        and retry are each page's. A page token dies with the agent that issued it: when the agent
        restarts or hands over between two pages (ABORTED / PAGE_TOKEN_EXPIRED), the listing starts
        again from the first page, once; a second time, that AgentError is raised."""
        page = first_page(request)
        try:
            return self._list_pages(page, timeout, retry)
        except AgentError as e:
            if e.reason != PAGE_TOKEN_EXPIRED:
                raise
        return self._list_pages(page, timeout, retry)

    def _list_pages(self, page: pb.ListRequest, timeout: float | None, retry: Retry | None) -> pb.ListResponse:
        page.page_token = ""
        listed = self._unary("List", page, timeout, retry)
        token = listed.next_page_token
        while token:
            page.page_token = token
            more = self._unary("List", page, timeout, retry)
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
        if isinstance(method, grpc.UnaryStreamMultiCallable):
            return lambda request, timeout=None: _stream(method(request, timeout=timeout), rpc)
        return lambda request, timeout=None, retry=None: self._unary(rpc, request, timeout, retry)

    def _unary(self, rpc: str, request, timeout: float | None, retry: Retry | None):
        method = getattr(self._stub, rpc)
        schedule = Schedule(retry, None if timeout is None else time.monotonic() + timeout)
        while True:
            # A call made after close() fails as grpc says (ValueError): it never left.
            sent_open = not self._closing.is_set()
            try:
                return method(request, timeout=schedule.remaining())
            except grpc.RpcError as e:
                error = AgentError.of(e, rpc, request)
            # grpc's close ends the calls in flight CANCELLED: say they may have run.
            if sent_open and self._closing.is_set():
                error = error.closed_in_flight()
                if error.client_closed:
                    raise error
            delay = schedule.delay_after(error)
            if delay is None:
                raise error
            # Closed, before or during the backoff: no attempt on a closed channel, and the last
            # failure (may it have run, under which request_id) rather than the closed channel's.
            if self._closing.wait(delay):
                raise error.ended_by_close()

    def close(self) -> None:
        """Closes the channel. A call waiting for its reply fails at once with UNAVAILABLE marked
        `client_closed` (it may have run: a spawn's error has its request_id, to resend on a new
        Agent); one waiting out a retry backoff with its last failure, marked so too."""
        self._closing.set()
        self._channel.close()

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _stream(responses, rpc: str):
    try:
        yield from responses
    except grpc.RpcError as e:
        raise AgentError.of(e, rpc) from None
    finally:
        responses.cancel()
