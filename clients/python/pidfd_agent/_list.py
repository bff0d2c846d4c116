"""Paging through List: both clients' list_all start from the same first page, and start again
from it once when the agent restarted or handed over between two pages."""
from __future__ import annotations

from pidfd.agent.v1 import agent_pb2 as pb

# The most processes a List page holds: a larger page_size is taken as this.
MAX_LIST_PAGE_SIZE = 1000

# The reason (ABORTED) of a page token issued before the agent restarted or handed over: list
# again from the first page.
PAGE_TOKEN_EXPIRED = "PAGE_TOKEN_EXPIRED"


def first_page(request: pb.ListRequest | None) -> pb.ListRequest:
    """A copy of the request (the caller's is not changed) for the first page, of its page_size
    or else the largest."""
    page = pb.ListRequest()
    if request is not None:
        page.CopyFrom(request)
    page.page_token = ""
    if page.page_size == 0:
        page.page_size = MAX_LIST_PAGE_SIZE
    return page
