package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// findBrowser returns Debian's chromium (or another Chrome), skipping the
// test where there is none, unless CI is set: there it must run.
func findBrowser(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium found; .ci/run installs it with apt-get install -y chromium")
	}
	t.Skip("no Chromium found: install it (Debian: apt-get install -y chromium) to run the browser tests")
	return ""
}

// browserDemo runs a gateway, a control endpoint with two people (an owner
// and a viewer of org-1) and an upstream, and a headless browser.
type browserDemo struct {
	*demo
	ownerKey, viewerKey string
	browser             context.Context
}

func newBrowserDemo(t *testing.T) *browserDemo {
	bin := findBrowser(t)
	dir := t.TempDir()
	b := &browserDemo{demo: &demo{dir: dir, adminKey: controltest.RandomKey()}, ownerKey: controltest.RandomKey(), viewerKey: controltest.RandomKey()}
	digest := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	principals := fmt.Sprintf(`{"principals": [
		{"id": "olivia", "name": "Olivia", "key_sha256": %q, "roles": {"org-1": "owner"}},
		{"id": "victor", "name": "Victor", "key_sha256": %q, "roles": {"org-1": "viewer"}}]}`, digest(b.ownerKey), digest(b.viewerKey))
	os.WriteFile(filepath.Join(dir, "principals.json"), []byte(principals), 0o600)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(upstream.Close)
	gw, ctl := freePort(t), freePort(t)
	b.gateway, b.control = fmt.Sprintf("http://127.0.0.1:%d", gw), fmt.Sprintf("http://127.0.0.1:%d", ctl)
	caddyfile := fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
	}
	reverse_proxy %s
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
		principals_file %s
	}
}
`, gw, b.control, strings.TrimPrefix(upstream.URL, "http://"), ctl, filepath.Join(dir, "conngate.db"), filepath.Join(dir, "principals.json"))
	writeSite(t, dir, caddyfile)
	b.env = IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+b.adminKey, "CONNGATE_GATEWAY_KEY="+controltest.RandomKey())
	startCaddy(t, dir, b.env, b.control+"/.well-known/jwks.json")
	waitGateways(t, b.demo, 1)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.WindowSize(1280, 900))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	b.browser = alloc
	return b
}

// tab opens a browser tab (its own sessionStorage) signed in with key.
func (b *browserDemo) tab(t *testing.T, key string) context.Context {
	ctx, cancel := chromedp.NewContext(b.browser)
	t.Cleanup(cancel)
	// Start the tab on its own context: a tab first run on a context that
	// is then cancelled (run's timeouts) would close with it.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting the browser: %v", err)
	}
	run(t, ctx, chromedp.Navigate(b.control+"/"), chromedp.WaitVisible("#key", chromedp.ByID),
		chromedp.SendKeys("#key", key, chromedp.ByID), chromedp.Click(`#sign-in-form button[type=submit]`, chromedp.ByQuery))
	until(t, ctx, "signed in", `!document.getElementById("list").hidden`)
	return ctx
}

func run(t *testing.T, ctx context.Context, actions ...chromedp.Action) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(tctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// until polls a JavaScript expression in the page until it is true.
func until(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		if err := chromedp.Run(ctx, chromedp.Evaluate(expr, &ok)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var text string
			err := chromedp.Run(ctx, chromedp.Evaluate(`"error=" + document.getElementById("error").textContent + " rows=" + [...document.querySelectorAll("#rows tr")].map(r => r.cells[0].textContent + ":" + r.querySelector(".badge").textContent).join(", ")`, &text))
			t.Fatalf("not within 10s: %s\npage: %s %v", what, text, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// click clicks the element sel finds once it exists, in one step in the
// page: the list re-renders on live updates, so a node found in one step
// may be gone in the next.
func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	until(t, ctx, sel+" present", `document.querySelector('`+sel+`') !== null`)
	run(t, ctx, chromedp.Evaluate(`document.querySelector('`+sel+`').click(); true`, nil))
}

func rowStatus(id string) string {
	return `(document.querySelector('tr[data-id="` + id + `"] .badge') || {}).textContent`
}

func TestConnectionsPage(t *testing.T) {
	b := newBrowserDemo(t)
	type conn struct{ id, token string }
	create := func(name string) conn {
		_, c := b.api(t, "POST", "/v1/connections", `{"name":"`+name+`","org_id":"org-1","user_id":"u-1"}`)
		return conn{c["connection"].(map[string]any)["id"].(string), c["access_token"].(string)}
	}
	zapier, slack, notion := create("Zapier sync"), create("Slack bot"), create("Notion export")
	b.api(t, "POST", "/v1/connections", `{"name":"Elsewhere","org_id":"org-2","user_id":"u-1"}`)

	page := b.tab(t, b.ownerKey)
	until(t, page, "three rows of org-1", `document.querySelectorAll("#rows tr").length === 3`)
	// CONNGATE_SCREENSHOT=docs/connections.png refreshes the README's picture.
	if out := os.Getenv("CONNGATE_SCREENSHOT"); out != "" {
		var png []byte
		run(t, page, chromedp.FullScreenshot(&png, 100))
		os.WriteFile(out, png, 0o644)
	}

	t.Run("search and filter", func(t *testing.T) {
		run(t, page, chromedp.SendKeys("#search", "slack", chromedp.ByID))
		until(t, page, "search keeps Slack only", `document.querySelectorAll("#rows tr").length === 1 && document.querySelector('#rows tr[data-id="`+slack.id+`"]') !== null`)
		run(t, page, chromedp.Evaluate(`(() => { const s = document.getElementById("search"); s.value = ""; s.dispatchEvent(new Event("input")); return true })()`, nil))
		until(t, page, "all rows back", `document.querySelectorAll("#rows tr").length === 3`)
	})

	t.Run("disable and enable from the menu", func(t *testing.T) {
		row := `tr[data-id="` + zapier.id + `"]`
		click(t, page, row+` .menu-button`)
		click(t, page, row+` [role=menuitem]`)
		until(t, page, "badge disabled", rowStatus(zapier.id)+` === "disabled"`)
		if code, body := b.call(t, zapier.token); code != 401 || body["reason"] != "connection_disabled" {
			t.Fatalf("gateway after disabling in the page: %d %v", code, body)
		}
		click(t, page, row+` .menu-button`)
		click(t, page, row+` [role=menuitem]`)
		until(t, page, "badge active", rowStatus(zapier.id)+` === "active"`)
		if code, _ := b.call(t, zapier.token); code != 200 {
			t.Fatalf("gateway after enabling in the page: %d", code)
		}
	})

	t.Run("the menu works with the keyboard", func(t *testing.T) {
		sel := `tr[data-id="` + notion.id + `"] .menu-button`
		until(t, page, "menus closed at first", `[...document.querySelectorAll("[role=menu]")].every(m => getComputedStyle(m).display === "none")`)
		run(t, page, chromedp.Focus(sel, chromedp.ByQuery), chromedp.KeyEvent("\r"))
		until(t, page, "menu open, first item focused", `document.activeElement.getAttribute("role") === "menuitem" && document.activeElement.textContent === "Disable"`)
		run(t, page, chromedp.KeyEvent("\u0301")) // ArrowDown
		until(t, page, "second item focused", `document.activeElement.textContent === "Delete"`)
		run(t, page, chromedp.KeyEvent("\u001b")) // Escape
		until(t, page, "menu closed, focus back on its button", `document.activeElement.classList.contains("menu-button") && document.activeElement.getAttribute("aria-expanded") === "false" && getComputedStyle(document.activeElement.nextElementSibling).display === "none"`)
		until(t, page, "nothing was changed by opening and closing the menu", rowStatus(notion.id)+` === "active"`)
	})

	t.Run("delete through the confirmation", func(t *testing.T) {
		sel := `tr[data-id="` + notion.id + `"]`
		click(t, page, sel+` .menu-button`)
		click(t, page, sel+` [role=menuitem].danger-item`)
		until(t, page, "the dialog says it cannot be restored", `document.getElementById("confirm-delete").open && document.getElementById("confirm-delete").textContent.includes("cannot be restored") && document.getElementById("confirm-delete").textContent.includes("loses access for good")`)
		click(t, page, "#confirm-ok")
		until(t, page, "gone from the default list", `document.querySelector('`+sel+`') === null && document.querySelectorAll("#rows tr").length === 2`)
		if code, body := b.call(t, notion.token); code != 401 || body["reason"] != "connection_deleted" {
			t.Fatalf("gateway after deleting in the page: %d %v", code, body)
		}
		click(t, page, "#show-deleted")
		until(t, page, "shown with the toggle, as deleted", rowStatus(notion.id)+` === "deleted"`)
		click(t, page, "#show-deleted")
		until(t, page, "hidden again", `document.querySelector('`+sel+`') === null`)
	})

	t.Run("a change made elsewhere appears without reload", func(t *testing.T) {
		until(t, page, "Slack shown active first", rowStatus(slack.id)+` === "active"`)
		b.api(t, "POST", "/v1/connections/"+slack.id+"/disable", "")
		until(t, page, "Slack disabled in the open page", rowStatus(slack.id)+` === "disabled"`)
	})

	t.Run("a change not yet applied everywhere says so", func(t *testing.T) {
		// A second gateway process that never acknowledges (a frozen one).
		req, _ := http.NewRequest(http.MethodGet, b.control+"/v1/events?gateway_id=frozen&instance=p1", nil)
		req.Header.Set("Authorization", "Bearer "+b.adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("opening the frozen gateway's stream: %v %v", resp, err)
		}
		defer resp.Body.Close()
		run(t, page, chromedp.Evaluate(`act({id: "`+slack.id+`", name: "Slack bot", org_id: "org-1", status: "disabled"}, "Enable")`, nil))
		until(t, page, "the page names the gateway that has not applied it",
			`!document.getElementById("notice").hidden && document.getElementById("notice").textContent.includes("not yet applied on 1 of 2 gateways (frozen/p1)")`)
		if code, _ := b.call(t, slack.token); code != 200 {
			t.Fatalf("the gateway that did apply it: %d", code)
		}
	})

	t.Run("errors are shown in words", func(t *testing.T) {
		b.api(t, "DELETE", "/v1/connections/"+zapier.id, "") // deleted elsewhere, while its row still shows
		run(t, page, chromedp.Evaluate(`act({id: "`+zapier.id+`", name: "Zapier sync", org_id: "org-1", status: "active"}, "Disable")`, nil))
		until(t, page, "an error in words", `!document.getElementById("error").hidden && document.getElementById("error").textContent.includes("deleted")`)
	})

	t.Run("each connection's app, and a filter by app", func(t *testing.T) {
		until(t, page, "an App column", `[...document.querySelectorAll("thead th")].some(th => th.textContent === "App")`)
		until(t, page, "a connection made through the API has none", `document.querySelector('tr[data-id="`+slack.id+`"] td.app.none') !== null`)
		// A connection made through an app: the owner authorises an app,
		// registered with the admin key, through the OAuth pages.
		_, app := b.api(t, "POST", "/v1/apps", `{"client_name": "Zapier", "redirect_uris": ["https://zapier.example/cb"], "token_endpoint_auth_method": "none", "org_id": "org-1"}`)
		appID := app["client_id"].(string)
		cfg := oauth2.Config{ClientID: appID, RedirectURL: "https://zapier.example/cb",
			Endpoint: oauth2.Endpoint{AuthURL: b.control + "/oauth/authorize", TokenURL: b.control + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams}}
		verifier := oauth2.GenerateVerifier()
		back := controltest.Authorize(t, b.control, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), b.ownerKey, "approve", "org-1")
		if back.Query().Get("code") == "" {
			t.Fatalf("authorising the app: back to %s", back)
		}
		// The connection is made when the app exchanges its code.
		if _, err := cfg.Exchange(context.Background(), back.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil {
			t.Fatalf("exchanging the code: %v", err)
		}
		_, list := b.api(t, "GET", "/v1/connections?app_id="+appID, "")
		conns := list["connections"].([]any)
		if len(conns) != 1 {
			t.Fatalf("connections through the app: %v", list)
		}
		viaApp := conns[0].(map[string]any)["id"].(string)
		row := `tr[data-id="` + viaApp + `"]`
		until(t, page, "the new connection appears, named by its app", `(document.querySelector('`+row+` td.app') || {}).textContent === "Zapier"`)
		until(t, page, "the app is offered in the filter", `[...document.getElementById("app").options].some(o => o.value === "`+appID+`" && o.text === "Zapier")`)
		// The filter is a plain select: focus it and pick with the keyboard.
		run(t, page, chromedp.Focus("#app", chromedp.ByID), chromedp.Evaluate(`(() => { const s = document.getElementById("app"); s.value = "`+appID+`"; s.dispatchEvent(new Event("change")); return true })()`, nil))
		until(t, page, "only the app's connection", `document.querySelectorAll("#rows tr").length === 1 && document.querySelector('`+row+`') !== null`)
		run(t, page, chromedp.Evaluate(`(() => { const s = document.getElementById("app"); s.value = ""; s.dispatchEvent(new Event("change")); return true })()`, nil))
		until(t, page, "every connection again", `document.querySelectorAll("#rows tr").length === 2`)
	})

	t.Run("readable at a phone's width", func(t *testing.T) {
		run(t, page, chromedp.EmulateViewport(390, 844))
		until(t, page, "no sideways scrolling at 390 px", `document.documentElement.scrollWidth <= 390`)
		until(t, page, "the menus still there", `document.querySelectorAll(".menu-button").length > 0`)
		run(t, page, chromedp.EmulateViewport(1280, 900))
	})

	t.Run("signing out leaves nothing on screen", func(t *testing.T) {
		click(t, page, "#sign-out")
		until(t, page, "signed out and the rows gone", `!document.getElementById("sign-in").hidden && document.querySelectorAll("#rows tr").length === 0 && sessionStorage.getItem("conngate.key") === null`)
	})

	t.Run("a viewer sees no actions", func(t *testing.T) {
		viewer := b.tab(t, b.viewerKey)
		until(t, viewer, "rows listed", `document.querySelectorAll("#rows tr").length >= 1`)
		until(t, viewer, "no menus", `document.querySelectorAll(".menu-button").length === 0`)
	})

}
