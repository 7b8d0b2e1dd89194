package control

import (
	"container/list"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// Failed API-key attempts are limited per client address: after
// keyFailuresAllowed wrong keys within keyFailureWindow (counted from the
// first of them), the address may present no key at all, right or wrong,
// until the window ends. A success does not reset the count, so that one
// valid key cannot be used to keep guessing another. With random keys of
// 32 bytes guessing is hopeless anyway; the limit protects shorter keys and
// keeps guessers from costing the server.
const (
	keyFailuresAllowed = 10
	keyFailureWindow   = time.Minute
	// keyFailureAddresses bounds the memory: past it the address whose
	// window started first is forgotten (about 150 bytes per address).
	keyFailureAddresses = 10_000
)

// keyAttempts counts the failed key attempts of each client address.
type keyAttempts struct {
	allowed int
	window  time.Duration
	max     int
	now     func() time.Time

	mu sync.Mutex
	// byAddress finds an address's element in windows, which is ordered by
	// the start of each window, oldest first.
	byAddress map[netip.Prefix]*list.Element
	windows   *list.List // of *failureWindow
}

type failureWindow struct {
	address  netip.Prefix
	start    time.Time
	failures int
}

func newKeyAttempts() *keyAttempts {
	return &keyAttempts{
		allowed:   keyFailuresAllowed,
		window:    keyFailureWindow,
		max:       keyFailureAddresses,
		now:       time.Now,
		byAddress: map[netip.Prefix]*list.Element{},
		windows:   list.New(),
	}
}

// blocked returns how long the address must wait before it may present a
// key again; 0 when it may now.
func (a *keyAttempts) blocked(address netip.Prefix) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.forgetEnded(now)
	e, ok := a.byAddress[address]
	if !ok {
		return 0
	}
	w := e.Value.(*failureWindow)
	if w.failures < a.allowed {
		return 0
	}
	return w.start.Add(a.window).Sub(now)
}

// failed counts a wrong key presented from the address.
func (a *keyAttempts) failed(address netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	a.forgetEnded(now)
	if e, ok := a.byAddress[address]; ok {
		e.Value.(*failureWindow).failures++
		return
	}
	for a.windows.Len() >= a.max {
		a.forget(a.windows.Front())
	}
	a.byAddress[address] = a.windows.PushBack(&failureWindow{address: address, start: now, failures: 1})
}

// forgetEnded drops the windows that have ended: the oldest come first.
func (a *keyAttempts) forgetEnded(now time.Time) {
	for e := a.windows.Front(); e != nil && !now.Before(e.Value.(*failureWindow).start.Add(a.window)); e = a.windows.Front() {
		a.forget(e)
	}
}

func (a *keyAttempts) forget(e *list.Element) {
	delete(a.byAddress, e.Value.(*failureWindow).address)
	a.windows.Remove(e)
}

// clientAddress is the address the attempts of r are counted under: the
// client IP as Caddy determined it (the connection's peer, or what a
// trusted proxy forwarded, per the server's trusted_proxies), and for IPv6
// its /64, which one client usually has whole.
func clientAddress(r *http.Request) netip.Prefix {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		ip, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{} // every unparsable address shares one count
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return netip.PrefixFrom(addr, 32)
	}
	p, _ := addr.Prefix(64)
	return p
}

// tooManyAttempts is the 429 of an address that presented too many wrong
// keys, with the whole seconds until it may try again.
func tooManyAttempts(wait time.Duration) *controlapi.Error {
	seconds := strconv.Itoa(int(math.Ceil(wait.Seconds())))
	err := controlapi.Errorf(http.StatusTooManyRequests, controlapi.CodeTooManyAttempts,
		"Too many wrong API keys from this address; try again in %s s.", seconds)
	err.Header = map[string]string{"Retry-After": seconds}
	return err
}
