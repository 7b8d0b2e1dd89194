package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// t0 is the suite's clock for refresh tokens: rotations take the caller's
// time, so fixed instants make the overlap edges exact.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// grant is an app with one connection made through it.
type grant struct {
	app  store.App
	conn store.Connection
}

func newGrant(t *testing.T, s store.Store) grant {
	t.Helper()
	app := createApp(t, s, "org-1")
	return grant{app: app, conn: createFor(t, s, app, "org-1")}
}

func (g grant) code(name string, expires time.Time) store.AuthCode {
	return store.AuthCode{Hash: sha(name), AppID: g.app.ID, ConnectionID: g.conn.ID, RedirectURI: g.app.RedirectURIs[0],
		Challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Scope: "read", ExpiresAt: expires}
}

func (g grant) token(name string) store.RefreshToken {
	return store.RefreshToken{Hash: sha(name), AppID: g.app.ID, ConnectionID: g.conn.ID, Scope: "read", IssuedAt: t0}
}

func sameCode(a, b store.AuthCode) bool {
	return bytes.Equal(a.Hash, b.Hash) && a.AppID == b.AppID && a.ConnectionID == b.ConnectionID && a.RedirectURI == b.RedirectURI &&
		a.Challenge == b.Challenge && a.Scope == b.Scope && a.ExpiresAt.Equal(b.ExpiresAt)
}

func sameToken(a, b store.RefreshToken) bool {
	return bytes.Equal(a.Hash, b.Hash) && a.AppID == b.AppID && a.ConnectionID == b.ConnectionID && a.Scope == b.Scope &&
		a.IssuedAt.Equal(b.IssuedAt) && a.RotatedAt.Equal(b.RotatedAt) && bytes.Equal(a.ReplacedBy, b.ReplacedBy)
}

// rotated is tok as it is after being replaced by next at when.
func rotated(tok store.RefreshToken, next store.RefreshToken, when time.Time) store.RefreshToken {
	tok.RotatedAt, tok.ReplacedBy = when, next.Hash
	return tok
}

// Authorisation codes are single-use: the first take returns the code, every
// later one returns it with ErrCodeUsed, even after a reopen.
func testCodes(t *testing.T, open Opener) {
	s := open(t, "codes")
	ctx := context.Background()
	g := newGrant(t, s)
	code := g.code("code-1", time.Now().Add(time.Minute))
	if err := s.SaveCode(ctx, code); err != nil {
		t.Fatalf("SaveCode: %v", err)
	}
	// Reading a code does not take it, however often.
	for i := range 2 {
		if got, err := s.GetCode(ctx, code.Hash); err != nil || !sameCode(got, code) {
			t.Fatalf("GetCode %d before the take = %+v, %v; want %+v", i+1, got, err, code)
		}
	}
	if _, err := s.GetCode(ctx, sha("never issued")); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("GetCode of an unknown code: %v", err)
	}
	if got, err := s.TakeCode(ctx, code.Hash); err != nil || !sameCode(got, code) {
		t.Fatalf("first TakeCode = %+v, %v; want %+v", got, err, code)
	}
	if got, err := s.GetCode(ctx, code.Hash); !errors.Is(err, store.ErrCodeUsed) || !sameCode(got, code) {
		t.Errorf("GetCode after the take = %+v, %v; want the code with ErrCodeUsed", got, err)
	}
	for i := range 2 {
		if got, err := s.TakeCode(ctx, code.Hash); !errors.Is(err, store.ErrCodeUsed) || !sameCode(got, code) {
			t.Errorf("take %d = %+v, %v; want the code with ErrCodeUsed", i+2, got, err)
		}
	}
	if err := s.SaveCode(ctx, code); err == nil {
		t.Error("saving a code under a stored hash succeeded")
	}
	if _, err := s.TakeCode(ctx, code.Hash); !errors.Is(err, store.ErrCodeUsed) {
		t.Errorf("after a refused second save the code is no longer used: %v", err)
	}

	expired := g.code("code-expired", time.Now().Add(-time.Second))
	if err := s.SaveCode(ctx, expired); err != nil {
		t.Fatal(err)
	}
	if got, err := s.TakeCode(ctx, expired.Hash); err != nil || !sameCode(got, expired) {
		t.Errorf("TakeCode of an expired code = %+v, %v; expiry is the caller's to check", got, err)
	}

	refused := []struct {
		name string
		code store.AuthCode
		want error
	}{
		{"unknown app", store.AuthCode{Hash: sha("code-2"), AppID: "app_missing", ConnectionID: g.conn.ID, ExpiresAt: time.Now().Add(time.Minute)}, store.ErrAppNotFound},
		{"no hash", store.AuthCode{AppID: g.app.ID, ConnectionID: g.conn.ID, ExpiresAt: time.Now().Add(time.Minute)}, store.ErrInvalid},
	}
	for _, tt := range refused {
		if err := s.SaveCode(ctx, tt.code); !errors.Is(err, tt.want) {
			t.Errorf("SaveCode, %s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := s.TakeCode(ctx, sha("code-2")); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("TakeCode of a refused code: %v, want ErrGrantNotFound", err)
	}
	if _, err := s.TakeCode(ctx, sha("never issued")); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("TakeCode unknown: %v, want ErrGrantNotFound", err)
	}

	fresh := g.code("code-3", time.Now().Add(time.Minute))
	if err := s.SaveCode(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, "codes")
	if _, err := s.TakeCode(ctx, code.Hash); !errors.Is(err, store.ErrCodeUsed) {
		t.Errorf("a used code after reopen: %v, want ErrCodeUsed", err)
	}
	if got, err := s.TakeCode(ctx, fresh.Hash); err != nil || !sameCode(got, fresh) {
		t.Errorf("an unused code after reopen: %+v, %v", got, err)
	}
}

// Concurrent exchanges of one code: exactly one gets it.
func testConcurrentTakes(t *testing.T, open Opener) {
	s := open(t, "code-race")
	g := newGrant(t, s)
	code := g.code("code-1", time.Now().Add(time.Minute))
	if err := s.SaveCode(context.Background(), code); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.TakeCode(context.Background(), code.Hash) })
	}
	wg.Wait()
	taken := 0
	for _, err := range errs {
		switch {
		case err == nil:
			taken++
		case !errors.Is(err, store.ErrCodeUsed):
			t.Errorf("concurrent TakeCode: %v", err)
		}
	}
	if taken != 1 {
		t.Errorf("%d of %d concurrent takes got the code, want exactly 1", taken, len(errs))
	}
}

// Refresh tokens rotate: a current token is replaced; a rotated one only
// within the overlap, only if it was rotated last (its replacement is still
// current), and then its replacement is rotated too. Anything else is a
// reuse that changes nothing.
func testRefreshTokens(t *testing.T, open Opener) {
	s := open(t, "refresh")
	ctx := context.Background()
	const overlap = 10 * time.Second

	t.Run("save and get", func(t *testing.T) {
		g := newGrant(t, s)
		tok := g.token("save")
		if err := s.SaveRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetRefreshToken(ctx, tok.Hash); err != nil || !sameToken(got, tok) || !got.RotatedAt.IsZero() {
			t.Errorf("GetRefreshToken = %+v, %v; want %+v, current", got, err, tok)
		}
		if err := s.SaveRefreshToken(ctx, tok); err == nil {
			t.Error("saving a token under a stored hash succeeded")
		}
		other := tok
		other.Hash, other.AppID = sha("other app"), "app_missing"
		if err := s.SaveRefreshToken(ctx, other); !errors.Is(err, store.ErrAppNotFound) {
			t.Errorf("SaveRefreshToken for an unknown app: %v, want ErrAppNotFound", err)
		}
		if _, err := s.GetRefreshToken(ctx, other.Hash); !errors.Is(err, store.ErrGrantNotFound) {
			t.Errorf("GetRefreshToken unknown: %v, want ErrGrantNotFound", err)
		}
		if _, err := s.RotateRefreshToken(ctx, other.Hash, g.token("x"), t0, overlap); !errors.Is(err, store.ErrGrantNotFound) {
			t.Errorf("RotateRefreshToken unknown: %v, want ErrGrantNotFound", err)
		}
	})

	// Each case starts from a chain: a token, then rotations of the current
	// one at the given instants. It then presents a token of the chain (by
	// position) and expects either success, with the resulting states of
	// the chain, or ErrRefreshReused with nothing changed.
	tests := []struct {
		name      string
		rotations []time.Duration // after t0, each rotating the current token
		present   int             // position in the chain
		at        time.Duration   // after t0
		overlap   time.Duration
		reused    bool
	}{
		{"current token", nil, 0, 0, overlap, false},
		{"current token, no overlap", nil, 0, 0, 0, false},
		{"current token long after", []time.Duration{0}, 1, time.Hour, overlap, false},
		{"rotated, outside the overlap", []time.Duration{0}, 0, overlap + time.Millisecond, overlap, true},
		{"rotated, at the overlap's end", []time.Duration{0}, 0, overlap, overlap, false},
		{"rotated, within the overlap", []time.Duration{0}, 0, time.Second, overlap, false},
		{"rotated, same instant, no overlap", []time.Duration{0}, 0, 0, 0, true},
		{"rotated last, after other rotations", []time.Duration{0, time.Second, 2 * time.Second}, 2, 3 * time.Second, overlap, false},
		{"rotated two rotations back, within the overlap", []time.Duration{0, time.Second}, 0, 2 * time.Second, overlap, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGrant(t, s)
			chain := []store.RefreshToken{g.token(fmt.Sprintf("%d-0", i))}
			if err := s.SaveRefreshToken(ctx, chain[0]); err != nil {
				t.Fatal(err)
			}
			for j, d := range tt.rotations {
				next := g.token(fmt.Sprintf("%d-%d", i, j+1))
				if _, err := s.RotateRefreshToken(ctx, chain[j].Hash, next, t0.Add(d), overlap); err != nil {
					t.Fatalf("setup rotation %d: %v", j+1, err)
				}
				chain[j] = rotated(chain[j], next, t0.Add(d))
				chain = append(chain, next)
			}
			presented := chain[tt.present]
			next := g.token(fmt.Sprintf("%d-next", i))
			got, err := s.RotateRefreshToken(ctx, presented.Hash, next, t0.Add(tt.at), tt.overlap)
			want := chain
			if tt.reused {
				if !errors.Is(err, store.ErrRefreshReused) || !sameToken(got, presented) {
					t.Errorf("RotateRefreshToken = %+v, %v; want the presented token with ErrRefreshReused", got, err)
				}
				next = store.RefreshToken{}
			} else {
				if err != nil {
					t.Fatalf("RotateRefreshToken: %v", err)
				}
				want = append([]store.RefreshToken(nil), chain...)
				last := len(want) - 1
				want[last] = rotated(want[last], next, t0.Add(tt.at))
				if tt.present != last {
					// A retry through the overlap now leads to the new token.
					want[tt.present].ReplacedBy = next.Hash
				}
				want = append(want, next)
				if !sameToken(got, want[tt.present]) {
					t.Errorf("RotateRefreshToken = %+v, want the presented token as it is now, %+v", got, want[tt.present])
				}
			}
			checkChain(t, s, want)
			if next.Hash == nil {
				if _, err := s.GetRefreshToken(ctx, sha(fmt.Sprintf("%d-next", i))); !errors.Is(err, store.ErrGrantNotFound) {
					t.Errorf("a refused rotation stored its new token: %v", err)
				}
			}
		})
	}

	t.Run("retried twice within the overlap", func(t *testing.T) { testRetriedTwice(t, s, newGrant(t, s)) })

	t.Run("new token of another connection", func(t *testing.T) {
		g, other := newGrant(t, s), newGrant(t, s)
		tok := g.token("mixed")
		if err := s.SaveRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		for _, next := range []store.RefreshToken{other.token("mixed-next"), {Hash: sha("mixed-bare")}} {
			if _, err := s.RotateRefreshToken(ctx, tok.Hash, next, t0, overlap); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("rotating into %+v: %v, want ErrInvalid", next, err)
			}
			if _, err := s.GetRefreshToken(ctx, next.Hash); !errors.Is(err, store.ErrGrantNotFound) {
				t.Errorf("a refused rotation stored its new token: %v", err)
			}
		}
		checkChain(t, s, []store.RefreshToken{tok})
	})
}

// testRetriedTwice: the token rotated last may be retried within its
// overlap as often as needed (each retry rotates the current token and
// points it at the new one), and not after.
func testRetriedTwice(t *testing.T, s store.Store, g grant) {
	ctx := context.Background()
	const overlap = 10 * time.Second
	first, second, third, fourth := g.token("retried-a"), g.token("retried-b"), g.token("retried-c"), g.token("retried-d")
	if err := s.SaveRefreshToken(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateRefreshToken(ctx, first.Hash, second, t0, overlap); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateRefreshToken(ctx, first.Hash, third, t0.Add(time.Second), overlap); err != nil {
		t.Fatalf("retry within the overlap: %v", err)
	}
	if _, err := s.RotateRefreshToken(ctx, first.Hash, fourth, t0.Add(2*time.Second), overlap); err != nil {
		t.Fatalf("second retry within the overlap: %v", err)
	}
	firstNow := rotated(first, fourth, t0)
	want := []store.RefreshToken{firstNow, rotated(second, third, t0.Add(time.Second)), rotated(third, fourth, t0.Add(2*time.Second)), fourth}
	for i, w := range want {
		got, err := s.GetRefreshToken(ctx, w.Hash)
		if err != nil || !sameToken(got, w) {
			t.Errorf("token %d = %+v, %v; want %+v", i, got, err, w)
		}
	}
	late := g.token("retried-late")
	if got, err := s.RotateRefreshToken(ctx, first.Hash, late, t0.Add(overlap+time.Millisecond), overlap); !errors.Is(err, store.ErrRefreshReused) || !sameToken(got, firstNow) {
		t.Errorf("retry after the overlap = %+v, %v; want the token with ErrRefreshReused", got, err)
	}
	if _, err := s.GetRefreshToken(ctx, late.Hash); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("a refused rotation stored its new token: %v", err)
	}
}

// checkChain asserts the stored tokens are want, of which exactly one, the
// last, is current.
func checkChain(t *testing.T, s store.Store, want []store.RefreshToken) {
	t.Helper()
	for i, w := range want {
		got, err := s.GetRefreshToken(context.Background(), w.Hash)
		if err != nil || !sameToken(got, w) {
			t.Errorf("token %d = %+v, %v; want %+v", i, got, err, w)
		}
		if current := got.RotatedAt.IsZero(); current != (i == len(want)-1) {
			t.Errorf("token %d current = %v; only the last of the chain may be", i, current)
		}
	}
}

// Concurrent refreshes with one token, as an app whose workers refresh at
// the same moment. Without overlap exactly one succeeds; within an overlap
// all do. Either way exactly one token is current afterwards, and no refused
// rotation stored its token.
func testConcurrentRotations(t *testing.T, open Opener) {
	s := open(t, "refresh-race")
	ctx := context.Background()
	for _, tt := range []struct {
		overlap time.Duration
		succeed int
	}{{0, 1}, {time.Minute, 8}} {
		t.Run(fmt.Sprintf("overlap %s", tt.overlap), func(t *testing.T) {
			g := newGrant(t, s)
			first := g.token(fmt.Sprintf("race-%s", tt.overlap))
			if err := s.SaveRefreshToken(ctx, first); err != nil {
				t.Fatal(err)
			}
			nexts := make([]store.RefreshToken, 8)
			errs := make([]error, len(nexts))
			var wg sync.WaitGroup
			for i := range nexts {
				nexts[i] = g.token(fmt.Sprintf("race-%s-%d", tt.overlap, i))
				wg.Go(func() { _, errs[i] = s.RotateRefreshToken(ctx, first.Hash, nexts[i], t0, tt.overlap) })
			}
			wg.Wait()
			succeeded, current := 0, 0
			for i, err := range errs {
				got, gerr := s.GetRefreshToken(ctx, nexts[i].Hash)
				switch {
				case err == nil:
					succeeded++
					if gerr != nil {
						t.Errorf("rotation %d succeeded but its token is not stored: %v", i, gerr)
					} else if got.RotatedAt.IsZero() {
						current++
					}
				case !errors.Is(err, store.ErrRefreshReused):
					t.Errorf("concurrent rotation: %v", err)
				case !errors.Is(gerr, store.ErrGrantNotFound):
					t.Errorf("refused rotation %d stored its token: %v", i, gerr)
				}
			}
			if succeeded != tt.succeed {
				t.Fatalf("%d of %d concurrent rotations succeeded, want %d", succeeded, len(nexts), tt.succeed)
			}
			if got, err := s.GetRefreshToken(ctx, first.Hash); err != nil || got.RotatedAt.IsZero() {
				t.Errorf("the presented token is still current: %+v %v", got, err)
			}
			if current != 1 {
				t.Errorf("%d current tokens after the race, want exactly 1", current)
			}
		})
	}
}

// Deleting an app drops its codes and refresh tokens, and no new ones can
// be saved for it; other apps' grants stay.
func testDeleteAppGrants(t *testing.T, open Opener) {
	s := open(t, "delete-app-grants")
	ctx := context.Background()
	g, other := newGrant(t, s), newGrant(t, s)
	code, otherCode := g.code("code", time.Now().Add(time.Minute)), other.code("other code", time.Now().Add(time.Minute))
	used := g.code("used code", time.Now().Add(time.Minute))
	first, second, otherToken := g.token("first"), g.token("second"), other.token("other token")
	for _, c := range []store.AuthCode{code, otherCode, used} {
		if err := s.SaveCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TakeCode(ctx, used.Hash); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []store.RefreshToken{first, otherToken} {
		if err := s.SaveRefreshToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RotateRefreshToken(ctx, first.Hash, second, t0, time.Minute); err != nil {
		t.Fatal(err)
	}

	if _, err := s.DeleteApp(ctx, g.app.ID, testActor); err != nil {
		t.Fatal(err)
	}
	for _, h := range [][]byte{code.Hash, used.Hash} {
		if _, err := s.TakeCode(ctx, h); !errors.Is(err, store.ErrGrantNotFound) {
			t.Errorf("TakeCode after DeleteApp: %v, want ErrGrantNotFound", err)
		}
	}
	for _, h := range [][]byte{first.Hash, second.Hash} {
		if _, err := s.GetRefreshToken(ctx, h); !errors.Is(err, store.ErrGrantNotFound) {
			t.Errorf("GetRefreshToken after DeleteApp: %v, want ErrGrantNotFound", err)
		}
	}
	if _, err := s.RotateRefreshToken(ctx, second.Hash, g.token("third"), t0, time.Minute); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("RotateRefreshToken after DeleteApp: %v, want ErrGrantNotFound", err)
	}
	if err := s.SaveCode(ctx, g.code("late code", time.Now().Add(time.Minute))); !errors.Is(err, store.ErrAppNotFound) {
		t.Errorf("SaveCode for a deleted app: %v, want ErrAppNotFound", err)
	}
	if err := s.SaveRefreshToken(ctx, g.token("late token")); !errors.Is(err, store.ErrAppNotFound) {
		t.Errorf("SaveRefreshToken for a deleted app: %v, want ErrAppNotFound", err)
	}
	if got, err := s.GetRefreshToken(ctx, otherToken.Hash); err != nil || !sameToken(got, otherToken) {
		t.Errorf("another app's token after DeleteApp: %+v, %v", got, err)
	}
	if got, err := s.TakeCode(ctx, otherCode.Hash); err != nil || !sameCode(got, otherCode) {
		t.Errorf("another app's code after DeleteApp: %+v, %v", got, err)
	}
}
