package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// In a real browser over HTTPS (Caddy's internal CA): the sign-in cookies
// are __Host- cookies the browser accepts (Secure, Path=/, no Domain), the
// sign-in redirect and the consent form work with them, and Sign out
// removes the session and shows the sign-in form of the same request.
func TestOAuthSignOutOverHTTPS(t *testing.T) {
	bin := findBrowser(t)
	d := newOAuthDemo(t)
	port := freePort(t)
	secure := fmt.Sprintf("https://127.0.0.1:%d", port)
	// The same store as the demo's control endpoint, served over HTTPS.
	d.caddyfile = strings.Replace(d.caddyfile, "{\n\tadmin ", "{\n\tskip_install_trust\n\tauto_https disable_redirects\n\tadmin ", 1)
	d.caddyfile += fmt.Sprintf(`
%s {
	bind 127.0.0.1
	tls internal
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		principals_file %s
		issuer conngate
		audience conngate-demo
	}
}
`, secure, filepath.Join(d.dir, "data", "conngate.db"), filepath.Join(d.dir, "data", "principals.json"))
	writeSite(t, d.dir, d.caddyfile)
	d.start(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.Flag("ignore-certificate-errors", true))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	page, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Run(page); err != nil { // starts the browser for page, not for a run's timeout
		t.Fatalf("starting the browser: %v", err)
	}

	cfg := d.register(t, secure)
	verifier := oauth2.GenerateVerifier()
	cookies := func() map[string]*network.Cookie {
		t.Helper()
		var got []*network.Cookie
		run(t, page, chromedp.ActionFunc(func(ctx context.Context) error {
			var err error
			got, err = network.GetCookies().WithURLs([]string{secure + "/oauth/authorize"}).Do(ctx)
			return err
		}))
		byName := map[string]*network.Cookie{}
		for _, c := range got {
			byName[c.Name] = c
		}
		return byName
	}
	signIn := func() {
		t.Helper()
		run(t, page, chromedp.WaitVisible("#key", chromedp.ByID), chromedp.SendKeys("#key", d.danaKey, chromedp.ByID),
			chromedp.Submit("#key", chromedp.ByID), chromedp.WaitVisible("#approve", chromedp.ByID))
	}

	run(t, page, chromedp.Navigate(cfg.AuthCodeURL("xyz", oauth2.S256ChallengeOption(verifier))))
	signIn()
	jar := cookies()
	for _, name := range []string{"__Host-conngate_session", "__Host-conngate_csrf"} {
		if c := jar[name]; c == nil || !c.Secure || !c.HTTPOnly || c.Path != "/" {
			t.Fatalf("the browser holds %s as %+v, want a Secure, HttpOnly cookie at /", name, c)
		}
	}

	run(t, page, chromedp.Click("#signout", chromedp.ByID), chromedp.WaitVisible("#key", chromedp.ByID))
	if _, ok := cookies()["__Host-conngate_session"]; ok {
		t.Fatal("the session cookie is still there after signing out")
	}
	var location string
	run(t, page, chromedp.Location(&location))
	if !strings.Contains(location, "client_id="+cfg.ClientID) || !strings.Contains(location, "state=xyz") {
		t.Errorf("signing out led to %s, want the same authorisation request", location)
	}

	signIn()
	run(t, page, chromedp.Click("#approve", chromedp.ByID))
	cfg.Endpoint.TokenURL = d.control + "/oauth/token" // the same store over plain HTTP: no CA to trust here
	if _, err := cfg.Exchange(context.Background(), d.code(t), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("exchange: %v", err)
	}
}
