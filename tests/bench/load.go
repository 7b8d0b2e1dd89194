package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkScript gives every request the next token of the pool: each wrk
// thread takes every n-th token, from a random start, so that consecutive
// requests carry distinct tokens and a round does not always reuse the same
// part of a large pool. done prints one machine-readable line.
const wrkScript = `
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  local file, n = args[1], tonumber(args[2])
  reqs = {}
  local i = 0
  for line in io.lines(file) do
    if i % n == id then
      reqs[#reqs + 1] = wrk.format("GET", "/data", {["Authorization"] = "Bearer " .. line})
    end
    i = i + 1
  end
  math.randomseed(os.time() * 7919 + id)
  idx = math.random(#reqs)
end
function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end
function done(summary, latency, requests)
  io.write(string.format("BENCH requests=%d duration_us=%d status_errors=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`

// wrkResult is one wrk round.
type wrkResult struct {
	requests int
	took     time.Duration
	p50, p99 time.Duration
}

func (r wrkResult) rps() float64 { return float64(r.requests) / r.took.Seconds() }

// runWrk drives url for d with the tokens in tokenFile.
func runWrk(script, url, tokenFile string, threads, conns int, d time.Duration) (wrkResult, error) {
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", max(1, int(d.Round(time.Second).Seconds()))), "--timeout", "5s", "-s", script, url,
		"--", tokenFile, strconv.Itoa(threads)).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "BENCH ") {
			line = l
		}
	}
	vals := map[string]int64{}
	for _, f := range strings.Fields(strings.TrimPrefix(line, "BENCH ")) {
		k, v, _ := strings.Cut(f, "=")
		vals[k], _ = strconv.ParseInt(v, 10, 64)
	}
	if vals["requests"] == 0 {
		return wrkResult{}, fmt.Errorf("wrk gave no result:\n%s", out)
	}
	if vals["status_errors"] > 0 || vals["socket_errors"] > 0 {
		return wrkResult{}, fmt.Errorf("wrk: %d answers not 2xx/3xx and %d socket errors of %d requests: the setup is broken\n%s",
			vals["status_errors"], vals["socket_errors"], vals["requests"], out)
	}
	return wrkResult{
		requests: int(vals["requests"]),
		took:     time.Duration(vals["duration_us"]) * time.Microsecond,
		p50:      time.Duration(vals["p50_us"]) * time.Microsecond,
		p99:      time.Duration(vals["p99_us"]) * time.Microsecond,
	}, nil
}

// pass sends one request with each token, from conns concurrent clients,
// and returns the wall time: the cold pass (every token new to the
// gateway), and the warm pass it is compared with. Every answer must be 200.
func pass(url string, tokens []string, conns int) (time.Duration, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	defer client.CloseIdleConnections()
	return parallel(len(tokens), conns, func(i int) error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+tokens[i])
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s with token %d: %s", url, i, resp.Status)
		}
		return nil
	})
}

func writeLines(path string, lines []string) error {
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}
