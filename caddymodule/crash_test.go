package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/scimgate/scimgate/caddymodule/journal"
	"github.com/scimgate/scimgate/caddymodule/scim"
	"github.com/scimgate/scimgate/caddymodule/store"
)

// crashChild runs in a child process of TestJournalSurvivesSIGKILL: a gateway on the data
// directory dir, served on a loopback port it prints, until it is killed.
func crashChild(dir string) int {
	g := &Handler{Tokens: []Token{{Name: "entra", Value: testToken}}, DataDir: dir,
		Journal: &JournalConfig{CheckpointEvery: 7}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := g.Provision(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "provision:", err)
		return 2
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println(l.Addr().String())
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = g.ServeHTTP(w, r, next)
	}))
	return 0
}

// TestJournalSurvivesSIGKILL kills a gateway with SIGKILL at random moments while it takes
// concurrent writes. After each kill, every request that was answered 2xx has its resource
// and its journal record, and the chain verifies with no sequence number missing.
// SCIMGATE_CRASH_ROUNDS sets the number of rounds (default 50).
func TestJournalSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	rounds := 50
	if v, err := strconv.Atoi(os.Getenv("SCIMGATE_CRASH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	dir := t.TempDir()
	acked := map[string]string{} // SCIM id -> userName, for every 201 received
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for round := 0; round < rounds; round++ {
		addr, kill := crashStartChild(t, dir)
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < 200; i++ { // bounded: the kill normally comes first
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("r%d-w%d-%d@contoso.example", round, w, i)
					id, ok := crashPost(client, addr, name)
					if ok {
						mu.Lock()
						acked[id] = name
						mu.Unlock()
					}
				}
			}(w)
		}
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		kill()
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()
		crashCheck(t, dir, acked, round)
	}
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged in any round")
	}
	t.Logf("%d rounds, %d acknowledged writes, all recorded", rounds, len(acked))
}

func crashStartChild(t *testing.T, dir string) (addr string, kill func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SCIMGATE_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not start: %v", err)
	}
	return strings.TrimSpace(line), func() {
		_ = cmd.Process.Kill() // SIGKILL
		_ = cmd.Wait()
	}
}

func crashPost(client *http.Client, addr, name string) (string, bool) {
	body := fmt.Sprintf(`{"schemas":["%s"],"userName":%q,"active":true}`, scim.UserSchema, name)
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/scim/v2/Users", strings.NewReader(body))
	if err != nil {
		return "", false
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := client.Do(req)
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusCreated {
		return "", false
	}
	var u struct{ ID string }
	if json.Unmarshal(data, &u) != nil || u.ID == "" {
		return "", false
	}
	return u.ID, true
}

// crashCheck opens the killed gateway's file directly and checks every acknowledged write.
func crashCheck(t *testing.T, dir string, acked map[string]string, round int) {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, storeFileName), store.Options{})
	if err != nil {
		t.Fatalf("round %d: reopening the store: %v", round, err)
	}
	defer st.Close()
	j, err := journal.Open(st.DB(), journal.Options{Name: DefaultJournalName})
	if err != nil {
		t.Fatalf("round %d: opening the journal: %v", round, err)
	}
	defer j.Close()
	rep, err := j.Verify(context.Background(), nil)
	if err != nil || !rep.OK {
		t.Fatalf("round %d: the journal does not verify after SIGKILL: %+v %v", round, rep, err)
	}
	recorded := map[string]bool{}
	var seqs []uint64
	var buf strings.Builder
	if _, err := j.Export(context.Background(), &buf, journal.Query{}, journal.FormatJSONL); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		var l struct {
			Record *journal.Record `json:"record"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Record != nil {
			if l.Record.Outcome == "applied" && l.Record.Action == "create" {
				recorded[l.Record.SCIMID] = true
			}
			seqs = append(seqs, l.Record.Seq)
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("round %d: sequence jumps from %d to %d", round, seqs[i-1], seqs[i])
		}
	}
	err = st.View(func(tx *store.Tx) error {
		for id, name := range acked {
			if !recorded[id] {
				return fmt.Errorf("acknowledged create of %s (%s) has no journal record", id, name)
			}
			if _, err := tx.Get(scim.UserType, id); err != nil {
				return fmt.Errorf("acknowledged user %s (%s) is missing: %w", id, name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
}
