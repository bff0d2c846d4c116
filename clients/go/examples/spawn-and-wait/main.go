// Spawns a process through pidfd-agent, follows it on Watch, waits for its exit, then signals one.
//
//	spawn-and-wait [unix:///run/pidfd-agent/agent.sock]
//	spawn-and-wait -cert client.pem -key client.key -ca ca.pem 10.0.0.5:50051
//	spawn-and-wait -cert client.pem -key client.key -ca ca.pem -server-name node-1.nodes.example.org 10.0.0.5:50051
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"

	"github.com/pidfd-agent/pidfd-agent/clients/go/agent"
	agentv1 "github.com/pidfd-agent/pidfd-agent/clients/go/pidfd/agent/v1"
)

func main() {
	cert := flag.String("cert", "", "client certificate (PEM), for TLS")
	key := flag.String("key", "", "its private key (PEM)")
	ca := flag.String("ca", "", "CA that signed the agent's certificate (PEM; default: system roots)")
	serverName := flag.String("server-name", "", "the name the agent's certificate must carry (default: the host dialled), to dial by IP an agent whose certificate names its node")
	flag.Parse()
	address := agent.DefaultAddress
	if flag.NArg() > 0 {
		address = flag.Arg(0)
	}
	var tlsConfig *tls.Config
	if *cert != "" {
		var err error
		if tlsConfig, err = agent.TLSConfig(*cert, *key, *ca); err != nil {
			log.Fatal(err)
		}
		tlsConfig.ServerName = *serverName
	}
	c, err := agent.Dial(address, tlsConfig)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := run(context.Background(), c); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, c *agent.Client) error {
	// Every page: one List of a busy agent may not fit in a message (LIST_TOO_LARGE).
	list, err := c.ListAll(ctx, &agentv1.ListRequest{})
	if err != nil {
		return err
	}
	spawned, err := c.Spawn(ctx, &agentv1.SpawnRequest{Argv: []string{"sh", "-c", "exit 3"}, Labels: map[string]string{"example": "spawn-and-wait"}})
	if err != nil {
		return err
	}
	p := spawned.GetProcess()
	fmt.Printf("spawned %s (pid %d)\n", p.GetHandle(), p.GetPid())

	sequence := list.GetSequence()
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	events, err := c.Watch(watchCtx, &agentv1.WatchRequest{Handles: []string{p.GetHandle()}, AfterSequence: &sequence})
	if err != nil {
		return err
	}
	for exited := false; !exited; {
		res, err := events.Recv()
		if err != nil {
			return err
		}
		for _, e := range res.GetEvents() {
			fmt.Printf("event %d: %s\n", e.GetSequence(), e.GetType())
			exited = exited || e.GetType() == agentv1.EventType_EVENT_TYPE_EXITED
		}
	}
	stopWatching()

	waited, err := c.Wait(ctx, &agentv1.WaitRequest{Handle: p.GetHandle()})
	if err != nil {
		return err
	}
	fmt.Println(agent.DescribeExit(waited.GetProcess().GetExit()))

	if _, err := c.Signal(ctx, &agentv1.SignalRequest{Handle: p.GetHandle(), Signal: "KILL"}); err != nil {
		fmt.Printf("signal after exit: %v (%s)\n", err, agent.Reason(err))
	}

	sleeper, err := c.Spawn(ctx, &agentv1.SpawnRequest{Argv: []string{"sleep", "60"}})
	if err != nil {
		return err
	}
	h := sleeper.GetProcess().GetHandle()
	if _, err := c.Signal(ctx, &agentv1.SignalRequest{Handle: h, Signal: "TERM"}); err != nil {
		return err
	}
	waited, err = c.Wait(ctx, &agentv1.WaitRequest{Handle: h})
	if err != nil {
		return err
	}
	fmt.Printf("sleep 60: %s\n", agent.DescribeExit(waited.GetProcess().GetExit()))
	_, err = c.Release(ctx, &agentv1.ReleaseRequest{Handle: h})
	return err
}
