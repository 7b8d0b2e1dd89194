package tests

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// oauthDemo is Caddyfile.example (its gateway unchanged) with a person,
// Dana, who has Developer Portal access in org-1, and a second site that
// serves the same control endpoint behind Caddy's basic_auth, the way an
// operator plugs in their own sign-in (with the demo's issuer, which the
// demo's gateway accepts).
type oauthDemo struct {
	*demo
	danaKey, danaPassword string
	sso                   string
	codes                 chan string // what the app's redirect URI received
	callback              string
}

func newOAuthDemo(t *testing.T) *oauthDemo {
	t.Helper()
	d := &oauthDemo{demo: newDemo(t), danaKey: controltest.RandomKey(), danaPassword: controltest.RandomKey(), codes: make(chan string, 4)}
	sum := sha256.Sum256([]byte(d.danaKey))
	principals := fmt.Sprintf(`{"principals": [{"id": "dana", "name": "Dana", "key_sha256": %q, "roles": {"org-1": "developer"}}]}`, hex.EncodeToString(sum[:]))
	// Caddyfile.example reads data/principals.json, as the README has it.
	if err := os.MkdirAll(filepath.Join(d.dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "data", "principals.json"), []byte(principals), 0o600); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(d.danaPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	sso := freePort(t)
	d.sso = fmt.Sprintf("http://127.0.0.1:%d", sso)
	cfg := d.caddyfile
	cfg += fmt.Sprintf(`
:%d {
	bind 127.0.0.1
	basic_auth /oauth/authorize {
		dana %s
	}
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		principals_file %s
		issuer %s
		audience conngate-demo
	}
}
`, sso, hash, filepath.Join(d.dir, "data", "conngate.db"), filepath.Join(d.dir, "data", "principals.json"), d.control)
	d.caddyfile = cfg
	writeSite(t, d.dir, cfg)

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r) // the browser's favicon.ico
			return
		}
		if code := r.URL.Query().Get("code"); code != "" {
			d.codes <- code
		} else {
			d.codes <- "error:" + r.URL.Query().Get("error")
		}
		fmt.Fprint(w, "<!doctype html><title>App</title><p id=done>back in the app</p>")
	}))
	t.Cleanup(app.Close)
	d.callback = app.URL + "/callback"
	return d
}

// register makes a public app with the admin key.
func (d *oauthDemo) register(t *testing.T, base string) oauth2.Config {
	t.Helper()
	code, app := d.api(t, http.MethodPost, "/v1/apps", fmt.Sprintf(`{"client_name": "Zapier", "redirect_uris": [%q], "token_endpoint_auth_method": "none", "org_id": "org-1"}`, d.callback))
	if code != http.StatusCreated {
		t.Fatalf("registering the app: %d %v", code, app)
	}
	return oauth2.Config{ClientID: app["client_id"].(string), RedirectURL: d.callback,
		Endpoint: oauth2.Endpoint{AuthURL: base + "/oauth/authorize", TokenURL: base + "/oauth/token"}}
}

func (d *oauthDemo) code(t *testing.T) string {
	t.Helper()
	select {
	case c := <-d.codes:
		if strings.HasPrefix(c, "error:") {
			t.Fatalf("the app got %s", c)
		}
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the app's redirect URI was never reached")
		return ""
	}
}

// An app that only speaks standard OAuth 2.0 connects itself through the
// real binary; the person approves in a real browser; both of the app's
// tokens follow the connection's status through a gateway configured as
// Caddyfile.example.
func TestOAuthThroughTheBinary(t *testing.T) {
	bin := findBrowser(t)
	d := newOAuthDemo(t)
	d.start(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	tab := func(t *testing.T) context.Context {
		ctx, cancel := chromedp.NewContext(alloc)
		t.Cleanup(cancel)
		if err := chromedp.Run(ctx); err != nil {
			t.Fatalf("starting the browser: %v", err)
		}
		return ctx
	}
	ctx := context.Background()

	t.Run("sign in with a key", func(t *testing.T) {
		cfg := d.register(t, d.control)
		verifier := oauth2.GenerateVerifier()
		page := tab(t)
		run(t, page, chromedp.Navigate(cfg.AuthCodeURL("xyz", oauth2.S256ChallengeOption(verifier))),
			chromedp.WaitVisible("#key", chromedp.ByID), chromedp.SendKeys("#key", d.danaKey, chromedp.ByID),
			chromedp.Submit("#key", chromedp.ByID), chromedp.WaitVisible("#approve", chromedp.ByID))
		var shown string
		run(t, page, chromedp.Text("main", &shown, chromedp.ByQuery))
		if !strings.Contains(shown, "Zapier") || !strings.Contains(shown, "org-1") {
			t.Errorf("the consent page does not name the app and the organisation:\n%s", shown)
		}
		run(t, page, chromedp.Click("#approve", chromedp.ByID))
		tok, err := cfg.Exchange(ctx, d.code(t), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		followsStatus(t, d, cfg, tok)
	})

	t.Run("signed in by a Caddy authentication handler", func(t *testing.T) {
		cfg := d.register(t, d.sso)
		verifier := oauth2.GenerateVerifier()
		page := tab(t)
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("dana:"+d.danaPassword))
		run(t, page, network.Enable(), network.SetExtraHTTPHeaders(network.Headers{"Authorization": basic}),
			chromedp.Navigate(cfg.AuthCodeURL("xyz", oauth2.S256ChallengeOption(verifier))),
			chromedp.WaitVisible("#approve", chromedp.ByID), chromedp.Click("#approve", chromedp.ByID))
		tok, err := cfg.Exchange(ctx, d.code(t), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		followsStatus(t, d, cfg, tok)
	})
}

// Through the binary, with the OAuth client apps use: approving makes no
// connection (an app that never exchanges its code leaves none on the
// Connections List); the exchange makes exactly one, whose token passes the
// gateway; the same code exchanged again is refused and the connection it
// made is deleted, at the gateway too.
func TestOAuthConnectionCreatedOnExchange(t *testing.T) {
	d := newOAuthDemo(t)
	d.start(t)
	cfg := d.register(t, d.control)
	ctx := context.Background()
	connections := func() []any {
		t.Helper()
		code, page := d.api(t, http.MethodGet, "/v1/connections?org_id=org-1&app_id="+cfg.ClientID, "")
		if code != http.StatusOK {
			t.Fatalf("listing connections: %d %v", code, page)
		}
		conns, _ := page["connections"].([]any)
		return conns
	}
	approve := func() (code, verifier string) {
		verifier = oauth2.GenerateVerifier()
		back := controltest.Authorize(t, d.control, cfg.AuthCodeURL("xyz", oauth2.S256ChallengeOption(verifier)), d.danaKey, "approve", "org-1")
		if back.Query().Get("code") == "" {
			t.Fatalf("no code in %s", back)
		}
		return back.Query().Get("code"), verifier
	}
	approve() // abandoned: its code is never exchanged
	code, verifier := approve()
	if conns := connections(); len(conns) != 0 {
		t.Fatalf("after approvals, before any exchange: %v, want no connection", conns)
	}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	conns := connections()
	if len(conns) != 1 {
		t.Fatalf("after the exchange: %v, want one connection", conns)
	}
	if cid := conns[0].(map[string]any)["id"]; cid != connectionOf(t, d, tok.AccessToken) {
		t.Errorf("the token acts through another connection than %v", cid)
	}
	if status, body := d.call(t, tok.AccessToken); status != http.StatusOK {
		t.Fatalf("the access token through the gateway: %d %v", status, body)
	}

	var re *oauth2.RetrieveError
	if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier)); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("the code exchanged again: %v, want invalid_grant", err)
	}
	if conns := connections(); len(conns) != 1 || conns[0].(map[string]any)["status"] != "deleted" {
		t.Errorf("after the code was exchanged again: %v, want the one connection, deleted", conns)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		status, _ := d.call(t, tok.AccessToken)
		if status == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway still answers %d to the first exchange's token", status)
		}
	}
}

// followsStatus disables, enables and deletes the token's connection and
// checks both tokens each time.
func followsStatus(t *testing.T, d *oauthDemo, cfg oauth2.Config, tok *oauth2.Token) {
	t.Helper()
	if code, body := d.call(t, tok.AccessToken); code != http.StatusOK {
		t.Fatalf("access token through the gateway: %d %v", code, body)
	}
	cid := connectionOf(t, d, tok.AccessToken)
	refresh := func() error {
		_, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		return err
	}
	invalidGrant := func(err error) bool {
		var re *oauth2.RetrieveError
		return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
	}

	d.api(t, http.MethodPost, "/v1/connections/"+cid+"/disable?wait=applied", "")
	if code, _ := d.call(t, tok.AccessToken); code != http.StatusUnauthorized {
		t.Errorf("disabled: gateway answered %d", code)
	}
	if err := refresh(); !invalidGrant(err) {
		t.Errorf("disabled: refresh gave %v", err)
	}
	d.api(t, http.MethodPost, "/v1/connections/"+cid+"/enable?wait=applied", "")
	if code, _ := d.call(t, tok.AccessToken); code != http.StatusOK {
		t.Errorf("enabled: the same access token got %d", code)
	}
	next, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("enabled: the same refresh token: %v", err)
	}
	d.api(t, http.MethodDelete, "/v1/connections/"+cid+"?wait=applied", "")
	for _, access := range []string{tok.AccessToken, next.AccessToken} {
		if code, _ := d.call(t, access); code != http.StatusUnauthorized {
			t.Errorf("deleted: gateway answered %d", code)
		}
	}
	if _, err := cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: next.RefreshToken}).Token(); !invalidGrant(err) {
		t.Errorf("deleted: refresh gave %v", err)
	}
}

// connectionOf asks the control endpoint which connection a token acts
// through (RFC 7662, with the gateway's key).
func connectionOf(t *testing.T, d *oauthDemo, token string) string {
	t.Helper()
	gatewayKey := ""
	for _, kv := range d.env {
		if v, ok := strings.CutPrefix(kv, "CONNGATE_GATEWAY_KEY="); ok {
			gatewayKey = v
		}
	}
	req, _ := http.NewRequest(http.MethodPost, d.control+"/oauth/introspect", strings.NewReader("token="+token))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+gatewayKey)
	code, body := do(t, req)
	cid, _ := body["cid"].(string)
	if code != http.StatusOK || body["active"] != true || cid == "" || body["client_id"] == "" {
		t.Fatalf("introspection: %d %v", code, body)
	}
	return cid
}

// The README's OAuth walk-through, run as written: the test plays Dana in
// the browser step (signs in with the key the script prints, approves) and
// types the code in.
func TestREADMEOAuthWalkthroughRunsAsWritten(t *testing.T) {
	script := codeBlockAfter(t, readFile(t, "../README.md"), "### Walk-through: an app connects itself with OAuth 2.0")
	d := newDemo(t)
	d.start(t)
	const reload = "./caddy reload --config Caddyfile.example --force"
	if !strings.Contains(script, reload) {
		t.Fatalf("the walk-through no longer reloads with %q", reload)
	}
	// The script runs on at once after its reload, which ends the change
	// streams; ?wait=applied waits for the reconnecting gateway.
	script = strings.NewReplacer("http://127.0.0.1:9180", d.control, "http://127.0.0.1:8080", d.gateway,
		reload, caddyBin+" reload --config Caddyfile --force").Replace(script)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", `A="Authorization: Bearer $CONNGATE_ADMIN_KEY"`+"\n"+script)
	cmd.Dir, cmd.Env = d.dir, append(d.env, "PATH="+os.Getenv("PATH"))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var authURL, key string
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		out.WriteString(line + "\n")
		switch {
		case strings.HasPrefix(line, d.control+"/oauth/authorize?"):
			authURL = line
		case strings.HasPrefix(line, "Dana's key: "):
			key = strings.TrimPrefix(line, "Dana's key: ")
			back := controltest.Authorize(t, d.control, authURL, key, "approve", "org-1")
			if back.Query().Get("state") != "xyz" {
				t.Errorf("state came back as %q", back.Query().Get("state"))
			}
			fmt.Fprintln(stdin, back.Query().Get("code"))
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("walk-through failed: %v\n%s\n%s", err, out.String(), stderr.String())
	}
	var statuses []string
	for _, m := range regexp.MustCompile(`(?m)^HTTP/1\.1 (\d{3})`).FindAllStringSubmatch(out.String(), -1) {
		statuses = append(statuses, m[1])
	}
	if got := strings.Join(statuses, " "); got != "200 401 200" {
		t.Errorf("gateway statuses %s, want 200 401 200\n%s", got, out.String())
	}
	if !strings.Contains(out.String(), `"error":"invalid_grant"`) || !strings.Contains(out.String(), "disabled") ||
		strings.Count(out.String(), `"refresh_token":"`) != 2 {
		t.Errorf("the refresh tokens did not follow the connection's status:\n%s", out.String())
	}
}
