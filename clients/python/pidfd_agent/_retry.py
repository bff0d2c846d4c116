"""Which failed calls are safe to send again, and the schedule the sync and asyncio clients retry
them on: bounded in attempts and time, jittered exponential backoff, never past the deadline.

UNAVAILABLE alone says nothing about what ran. With reason HANDOVER the agent refused the call at
its gate, so nothing of it ran (except a Stop or WriteStdin already in flight, which the handover
ends after it acted). With no reason the transport failed: the request may have been carried out
and only the reply lost, so only a call that changes nothing, or one the agent recognises by its
request_id, may be sent again.
"""
from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

import grpc
from pidfd.agent.v1 import agent_pb2 as pb


@dataclass(frozen=True)
class Retry:
    """A retry policy. `attempts` counts the first; the backoff before retry n is
    initial_backoff * 2**(n-1), at most max_backoff, jittered down by up to half; no retry starts
    later than `window` seconds after the first failure."""

    attempts: int = 6
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    window: float = 10.0


# About 3 s of backoff over 6 attempts: an agent restart or handover on the node takes 0.1-1 s,
# a container restart a few seconds; an agent down for longer is the caller's to handle.
DEFAULT_RETRY = Retry()

_READS = {"Get", "List", "ListThreads"}
_KEYED = {"Spawn", "SpawnBatch", "Adopt"}
# A Wait whose reply was lost may have released a release_on_exit process's handle, and its exit
# with it: resent, it would get UNKNOWN_HANDLE in place of the exit.
_REFUSABLE = {"Wait", "Signal", "Release", "CloseStdin", "ResizeTerminal"}


def new_request_id() -> str:
    """A request id as the client makes them up: a random UUID."""
    return str(uuid.uuid4())


def is_retryable(error: BaseException) -> bool:
    """Whether sending the failed call again can neither do twice what it did once nor be answered
    for what another call did. True only for UNAVAILABLE: reads (Get, List, ListThreads) always; Spawn, SpawnBatch and Adopt
    when every request carried a request_id (the agent replays, or answers OUTCOME_UNKNOWN or REQUEST_RELEASED, never
    starts twice) or the agent refused them (HANDOVER); Wait, Signal, Release, CloseStdin and
    ResizeTerminal only when refused. Never Stop or WriteStdin, nor a stream (resume those by
    offset or cursor instead)."""
    code = getattr(error, "code", None)
    if code != grpc.StatusCode.UNAVAILABLE or not hasattr(error, "method"):
        return False
    refused = error.reason == "HANDOVER"
    transport = error.reason == ""
    if error.method in _READS:
        return refused or transport
    if error.method in _KEYED:
        ids = error.request_ids if error.request_ids is not None else [error.request_id]
        return refused or (transport and len(ids) > 0 and all(ids))
    if error.method in _REFUSABLE:
        return refused
    return False


def with_request_ids(request, auto: bool):
    """The request to send: a copy with a new request_id where the caller gave none (for
    SpawnBatch, in each item), unless `auto` is False. The caller's message is never changed, so
    one request reused as a template still starts a process each time."""
    if not auto:
        return request
    if isinstance(request, pb.SpawnRequest) and not request.request_id:
        keyed = pb.SpawnRequest()
        keyed.CopyFrom(request)
        keyed.request_id = new_request_id()
        return keyed
    if isinstance(request, pb.SpawnBatchRequest) and not all(r.request_id for r in request.requests):
        keyed = pb.SpawnBatchRequest()
        keyed.CopyFrom(request)
        for r in keyed.requests:
            if not r.request_id:
                r.request_id = new_request_id()
        return keyed
    return request


def request_ids_of(request):
    """What AgentError carries of the request: (request_id, request_ids)."""
    if isinstance(request, pb.SpawnBatchRequest):
        return None, [r.request_id for r in request.requests]
    if isinstance(request, (pb.SpawnRequest, pb.AdoptRequest)):
        return request.request_id, None
    return None, None


class Schedule:
    """The retries of one call. `deadline` is a time.monotonic() value or None."""

    def __init__(self, policy: Retry | None, deadline: float | None):
        self._policy = policy
        self._deadline = deadline
        self._first_failure: float | None = None
        self._attempt = 1

    def remaining(self) -> float | None:
        """The timeout of the next attempt: what is left of the call's."""
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def delay_after(self, error) -> float | None:
        """Seconds to wait before the next attempt, or None: raise `error`."""
        policy = self._policy
        if policy is None or not is_retryable(error):
            return None
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
        full = min(policy.max_backoff, policy.initial_backoff * 2 ** (self._attempt - 1))
        delay = full * (0.5 + random.random() / 2)
        late = now + delay - self._first_failure > policy.window
        if self._attempt >= policy.attempts or late or (self._deadline is not None and now + delay >= self._deadline):
            return None
        self._attempt += 1
        return delay
