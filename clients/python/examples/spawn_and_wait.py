"""Spawns a process through pidfd-agent, follows it on Watch, waits for its exit, then signals one.

    python3 examples/spawn_and_wait.py [unix:///run/pidfd-agent/agent.sock]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the client, next to this directory

from pidfd_agent import Agent, AgentError, describe_exit, pb  # noqa: E402

address = sys.argv[1] if len(sys.argv) > 1 else "unix:///run/pidfd-agent/agent.sock"
with Agent(address) as agent:
    sequence = agent.list_all().sequence
    p = agent.spawn(pb.SpawnRequest(argv=["sh", "-c", "exit 3"], labels={"example": "spawn-and-wait"})).process
    print(f"spawned {p.handle} (pid {p.pid})")
    done = False
    for response in agent.watch(pb.WatchRequest(handles=[p.handle], after_sequence=sequence)):
        for event in response.events:
            print(f"event {event.sequence}: {pb.EventType.Name(event.type)}")
            done = done or event.type == pb.EVENT_TYPE_EXITED
        if done:
            break
    print(describe_exit(agent.wait(pb.WaitRequest(handle=p.handle)).process.exit))
    try:
        agent.signal(pb.SignalRequest(handle=p.handle, signal="KILL"))
    except AgentError as e:
        print(f"signal after exit: {e} ({e.reason})")
    sleeper = agent.spawn(pb.SpawnRequest(argv=["sleep", "60"])).process
    agent.signal(pb.SignalRequest(handle=sleeper.handle, signal="TERM"))
    print(f"sleep 60: {describe_exit(agent.wait(pb.WaitRequest(handle=sleeper.handle)).process.exit)}")
    agent.release(pb.ReleaseRequest(handle=sleeper.handle))
