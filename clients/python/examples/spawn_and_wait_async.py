"""spawn_and_wait.py with asyncio (pidfd_agent.aio, over grpc.aio).

    python3 examples/spawn_and_wait_async.py [unix:///run/pidfd-agent/agent.sock]
"""
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the client, next to this directory

from pidfd_agent import AgentError, describe_exit, pb  # noqa: E402
from pidfd_agent.aio import Agent  # noqa: E402


async def main(address: str) -> None:
    async with Agent(address) as agent:
        sequence = (await agent.list_all()).sequence
        p = (await agent.spawn(pb.SpawnRequest(argv=["sh", "-c", "exit 3"], labels={"example": "spawn-and-wait"}))).process
        print(f"spawned {p.handle} (pid {p.pid})")
        async for response in agent.watch(pb.WatchRequest(handles=[p.handle], after_sequence=sequence)):
            for event in response.events:
                print(f"event {event.sequence}: {pb.EventType.Name(event.type)}")
            if any(event.type == pb.EVENT_TYPE_EXITED for event in response.events):
                break
        print(describe_exit((await agent.wait(pb.WaitRequest(handle=p.handle))).process.exit))
        try:
            await agent.signal(pb.SignalRequest(handle=p.handle, signal="KILL"))
        except AgentError as e:
            print(f"signal after exit: {e} ({e.reason})")
        sleeper = (await agent.spawn(pb.SpawnRequest(argv=["sleep", "60"]))).process
        await agent.signal(pb.SignalRequest(handle=sleeper.handle, signal="TERM"))
        print(f"sleep 60: {describe_exit((await agent.wait(pb.WaitRequest(handle=sleeper.handle))).process.exit)}")
        await agent.release(pb.ReleaseRequest(handle=sleeper.handle))


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "unix:///run/pidfd-agent/agent.sock"))
