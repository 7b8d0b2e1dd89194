package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// BenchmarkRevocationLatency measures how long a disable takes to reach
// every gateway: 1 control and 3 gateway processes of the real binary on
// loopback, one client per gateway sending requests with the connection's
// token, 200 connections disabled one by one. For each disable and gateway
// it takes the time from the disable's 200 to the first 401 the client sees.
// It runs twice in one go: alone, and with 2,000 people's change streams
// open on the control endpoint (as 2,000 open Connections List pages).
//
//	go test ./tests -run '^$' -bench RevocationLatency -benchtime 1x
func BenchmarkRevocationLatency(b *testing.B) {
	for _, streams := range []int{0, 2000} {
		b.Run(fmt.Sprintf("people_streams=%d", streams), func(b *testing.B) { revocationLatency(b, streams) })
	}
}

func revocationLatency(b *testing.B, peopleStreams int) {
	const gateways, connections = 3, 200
	dir := b.TempDir()
	adminKey, gatewayKey := controltest.RandomKey(), controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey)

	controlPort := freePort(b)
	control := fmt.Sprintf("http://127.0.0.1:%d", controlPort)
	writeSite(b, filepath.Join(dir, "control"), fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
		max_streams_per_principal 4096
	}
}
`, controlPort, filepath.Join(dir, "conngate.db")))
	startCaddy(b, filepath.Join(dir, "control"), env, control+"/.well-known/jwks.json")

	var gws []string
	for i := range gateways {
		port := freePort(b)
		gws = append(gws, fmt.Sprintf("http://127.0.0.1:%d", port))
		site := filepath.Join(dir, fmt.Sprintf("gateway-%d", i))
		writeSite(b, site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		gateway_id gw-%d
	}
	respond "ok" 200
}
`, port, control, i))
		startCaddy(b, site, env, control+"/.well-known/jwks.json")
	}
	api := &demo{control: control, adminKey: adminKey}
	waitGateways(b, api, gateways)
	openPeopleStreams(b, control, adminKey, peopleStreams)
	measureRevocations(b, api, gws, connections)
}

// measureRevocations creates connections through api and disables them one
// by one; for each disable and gateway it takes the time from the disable's
// 200 to the first 401 a client of that gateway sees, and reports the
// percentiles.
func measureRevocations(b *testing.B, api *demo, gws []string, connections int) {
	gateways := len(gws)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	lat := make([][]time.Duration, gateways)
	early := 0
	for range connections {
		_, created := api.api(b, "POST", "/v1/connections", `{"name":"bench","org_id":"org-1","user_id":"u"}`)
		token := created["access_token"].(string)
		id := created["connection"].(map[string]any)["id"].(string)

		// One client per gateway, sending requests with the token until it
		// sees a 401; each notes when it saw the first one.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		first := make([]time.Time, gateways)
		var ready, done sync.WaitGroup
		for g := range gateways {
			ready.Add(1)
			done.Add(1)
			go func() {
				defer done.Done()
				warm := false
				for ctx.Err() == nil {
					code := get(ctx, client, gws[g], token)
					if code == 200 && !warm {
						warm = true
						ready.Done()
					}
					if code == 401 {
						first[g] = time.Now()
						if !warm {
							ready.Done()
						}
						return
					}
				}
			}()
		}
		ready.Wait()
		code, _ := api.api(b, "POST", "/v1/connections/"+id+"/disable", "")
		acked := time.Now()
		if code != 200 {
			b.Fatalf("disable: %d", code)
		}
		done.Wait()
		cancel()
		for g := range gateways {
			if first[g].IsZero() {
				b.Fatalf("gateway %d never refused the token", g)
			}
			d := first[g].Sub(acked)
			if d < 0 { // the 401 came before the client read the disable's 200
				early++
				d = 0
			}
			lat[g] = append(lat[g], d)
		}
	}

	var all []time.Duration
	report := func(name string, ds []time.Duration) {
		s := slices.Clone(ds)
		slices.Sort(s)
		p := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
		fmt.Printf("%-10s n=%d  p50=%-10s p99=%-10s max=%s\n", name, len(s), p(0.50), p(0.99), s[len(s)-1])
	}
	for g := range gateways {
		report(fmt.Sprintf("gateway %d", g), lat[g])
		all = append(all, lat[g]...)
	}
	report("all", all)
	fmt.Printf("(%d of %d first-401s arrived before the client had read the disable's 200; counted as 0)\n", early, len(all))
	slices.Sort(all)
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[min(len(all)-1, len(all)*99/100)].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
}

// openPeopleStreams opens n change streams as a person would (no gateway
// id), each on its own connection, read and discarded until the benchmark
// ends. They are held by another process (this test binary, started again
// with holdStreamsEnv set), as the browsers of 2,000 open pages would be:
// 2,000 readers in the benchmark's own process would delay its clients and
// be measured as the gateways' latency.
func openPeopleStreams(b *testing.B, control, key string, n int) {
	if n == 0 {
		return
	}
	// At the lowest CPU priority: on this one machine the holder stands for
	// 2,000 browsers elsewhere, whose reading costs the gateways nothing.
	cmd := exec.Command("nice", "-n", "19", os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", holdStreamsEnv, n), "CONNGATE_HOLD_URL="+control+"/v1/events", "CONNGATE_HOLD_KEY="+key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "open") {
		b.Fatalf("the stream holder: %q %v", line, err)
	}
	fmt.Printf("%d people's streams open (held by another process)\n", n)
}

// holdStreamsEnv makes the test binary hold change streams instead of
// running tests (see openPeopleStreams).
const holdStreamsEnv = "CONNGATE_HOLD_STREAMS"

// holdStreams opens the streams, says "open" on stdout and reads them until
// it is killed.
func holdStreams() int {
	n, _ := strconv.Atoi(os.Getenv(holdStreamsEnv))
	url, key := os.Getenv("CONNGATE_HOLD_URL"), os.Getenv("CONNGATE_HOLD_KEY")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	var opened sync.WaitGroup
	var failed atomic.Int32
	for range n {
		opened.Add(1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := client.Do(req)
			opened.Done()
			if err != nil || resp.StatusCode != http.StatusOK {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
		}()
	}
	opened.Wait()
	if f := failed.Load(); f > 0 {
		fmt.Printf("failed: %d of %d streams\n", f, n)
		return 1
	}
	fmt.Println("open")
	select {}
}

func waitGateways(t testing.TB, d *demo, n int) {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, gws := d.api(t, "GET", "/v1/gateways", "")
		if len(connectedGateways(gws)) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateways did not subscribe: %v", gws)
		}
	}
}

func get(ctx context.Context, c *http.Client, base, token string) int {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/data", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
