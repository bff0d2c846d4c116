"""Exit.status is a oneof: read it with WhichOneof, since `code` reads 0 when `signal` is set."""
from __future__ import annotations

from pidfd.agent.v1 import agent_pb2 as pb


def describe_exit(exit_: pb.Exit) -> str:
    """'exited with code 3', 'killed by signal SIGTERM', or 'status lost'."""
    which = exit_.WhichOneof("status")
    if which == "code":
        return f"exited with code {exit_.code}"
    if which == "signal":
        return f"killed by signal {exit_.signal_name or exit_.signal}"
    return "status lost"
