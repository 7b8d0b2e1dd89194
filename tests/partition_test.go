package tests

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// frozenRelay forwards TCP between a gateway and the control endpoint until
// frozen; then it carries no byte either way and closes nothing, as a
// network partition does (a closed connection would be noticed at once).
type frozenRelay struct {
	addr   string
	frozen atomic.Bool
	mu     sync.Mutex
	thaw   chan struct{}
	ln     net.Listener
	conns  []net.Conn // every connection, to cut
}

func newFrozenRelay(t *testing.T, target string) *frozenRelay {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &frozenRelay{addr: l.Addr().String(), thaw: make(chan struct{}), ln: l}
	var conns sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		r.unfreeze()
	})
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, in, out)
			r.mu.Unlock()
			conns.Add(2)
			go r.pipe(in, out, &conns)
			go r.pipe(out, in, &conns)
		}
	}()
	return r
}

// pipe copies src to dst, holding every chunk while the relay is frozen.
func (r *frozenRelay) pipe(src, dst net.Conn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if r.frozen.Load() {
				r.mu.Lock()
				thaw := r.thaw
				r.mu.Unlock()
				<-thaw
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (r *frozenRelay) freeze() { r.frozen.Store(true) }

// cut closes the relay and every connection through it: the far side is
// down (connections reset, new ones refused).
func (r *frozenRelay) cut() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

func (r *frozenRelay) unfreeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.frozen.Swap(false) {
		close(r.thaw)
		r.thaw = make(chan struct{})
	}
}

// A partition between the gateway and the control endpoint, with every
// setting at its default: a connection disabled when the partition begins
// stops passing within the bound the README states (13 s with the
// defaults; the issue asks for at most 15 s), and then gets 503 (its
// status is unknowable there), never 200 again.
func TestPartitionWorstCase(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 13 s")
	}
	d := newDemo(t)
	relay := newFrozenRelay(t, strings.TrimPrefix(d.control, "http://"))
	d.caddyfile = strings.Replace(d.caddyfile, "control_url "+d.control, "control_url http://"+relay.addr, 1)
	if err := os.WriteFile(filepath.Join(d.dir, "Caddyfile"), []byte(d.caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start(t)
	code, created := d.api(t, "POST", "/v1/connections", `{"name":"Partitioned","org_id":"org-1","user_id":"user-1"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	token := created["access_token"].(string)
	id := created["connection"].(map[string]any)["id"].(string)
	if code, body := d.call(t, token); code != 200 {
		t.Fatalf("before the partition: %d %v", code, body)
	}

	relay.freeze()
	start := time.Now()
	if code, body := d.api(t, "POST", "/v1/connections/"+id+"/disable", ""); code != 200 {
		t.Fatalf("disable: %d %v", code, body)
	}
	const bound = 13 * time.Second // README: min(idle, 2×2s+1s) + 1s + 5s + 2s
	// took is when the last 200 came back: the last moment the disabled
	// connection passed. The first refusal comes up to control_timeout
	// later (the request waits for one more failed lookup, then 503).
	var last int
	var took time.Duration
	for {
		last, _ = d.call(t, token)
		if last != 200 {
			break
		}
		took = time.Since(start)
		if took > bound+5*time.Second {
			t.Fatalf("still 200 %s after the disable, past the %s bound", took, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("a disabled connection passed for %s during the partition (bound %s); first refused after %s",
		took.Round(100*time.Millisecond), bound, time.Since(start).Round(100*time.Millisecond))
	if last != http.StatusServiceUnavailable {
		t.Errorf("after the stale window: %d, want 503 (the status cannot be known through the partition)", last)
	}
	if took > bound+time.Second { // a second of scheduling slack on a loaded machine
		t.Errorf("passed for %s, above the documented bound %s", took, bound)
	}
	if took < 5*time.Second {
		t.Errorf("stopped passing after %s: the relay did not partition the stream (it must take at least the 5 s to notice the silence)", took)
	}
	for range 5 {
		if code, _ := d.call(t, token); code == 200 {
			t.Fatal("200 again during the partition")
		}
	}
	relay.unfreeze()
}
