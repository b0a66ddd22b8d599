// Command devetcd runs a local etcd cluster for trying a scimgate fleet on one machine with
// nothing installed but Go: the members are etcd's own server (go.etcd.io/etcd/server/v3/embed)
// in one process, each with its own data directory and ports on 127.0.0.1. It is a
// development tool: production fleets run etcd as its own service (README, "A fleet on
// etcd"), and the scimgate binary does not contain an etcd server.
//
//	go run ./cmd/devetcd                       # 3 members: clients on 2379, 22379, 42379
//	go run ./cmd/devetcd -members 1 -dir /tmp/etcd
//
// Stop it with Ctrl-C; the data stays in -dir, and the next start resumes it.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func main() {
	members := flag.Int("members", 3, "number of members (1, 3 or 5)")
	dir := flag.String("dir", "./etcd-data", "directory for the members' data")
	port := flag.Int("port", 2379, "client port of the first member; member i listens on port+20000*i (client) and port+1+20000*i (peer)")
	flag.Parse()
	if err := run(*members, *dir, *port); err != nil {
		fmt.Fprintln(os.Stderr, "devetcd:", err)
		os.Exit(1)
	}
}

func run(n int, dir string, port int) error {
	if n != 1 && n != 3 && n != 5 {
		return fmt.Errorf("-members must be 1, 3 or 5 (a quorum needs an odd number), got %d", n)
	}
	if port < 1 || port+20000*(n-1)+1 > 65535 {
		return fmt.Errorf("-port %d leaves no room for %d members", port, n)
	}
	var initial, endpoints []string
	cfgs := make([]*embed.Config, n)
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cli := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port+20000*i)}
		peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port+1+20000*i)}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cli}, []url.URL{cli}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialClusterToken = "scimgate-devetcd"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfgs[i] = cfg
		initial = append(initial, cfg.Name+"="+peer.String())
		endpoints = append(endpoints, cli.String())
	}
	var started []*embed.Etcd
	defer func() {
		for _, e := range started {
			e.Close()
		}
	}()
	for _, cfg := range cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return fmt.Errorf("starting member %s: %w", cfg.Name, err)
		}
		started = append(started, e)
	}
	for _, e := range started {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			return fmt.Errorf("member %s: %w", e.Config().Name, err)
		case <-time.After(time.Minute):
			return fmt.Errorf("member %s not ready within a minute", e.Config().Name)
		}
	}
	fmt.Printf("etcd is ready: %d member(s), data in %s\nendpoints %s\n", n, dir, strings.Join(endpoints, " "))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	errs := make(chan error, n)
	for _, e := range started {
		go func() { errs <- <-e.Err() }()
	}
	select {
	case <-stop:
		fmt.Println("stopping")
		return nil
	case err := <-errs:
		return fmt.Errorf("a member failed: %w", err)
	}
}
