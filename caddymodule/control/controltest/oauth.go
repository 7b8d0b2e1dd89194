package controltest

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"testing"
)

// Browser is an HTTP client that keeps cookies and does not follow
// redirects, so that a test can walk the authorisation pages as a browser
// would and stop where the server sends the person back to the app.
func Browser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Page is an authorisation page as a browser got it.
type Page struct {
	Status int
	Body   string
	Header http.Header
	// Form holds the page's form fields (hidden ones included), by name.
	Form url.Values
}

var fieldPattern = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)

// Get fetches an authorisation page.
func Get(t testing.TB, b *http.Client, pageURL string) Page {
	t.Helper()
	resp, err := b.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	return readPage(t, resp)
}

// Post submits a form to the authorisation endpoint of base.
func Post(t testing.TB, b *http.Client, base string, form url.Values) Page {
	t.Helper()
	resp, err := b.PostForm(base+"/oauth/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	return readPage(t, resp)
}

func readPage(t testing.TB, resp *http.Response) Page {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := Page{Status: resp.StatusCode, Body: string(body), Header: resp.Header, Form: url.Values{}}
	for _, m := range fieldPattern.FindAllStringSubmatch(p.Body, -1) {
		p.Form.Set(m[1], html.UnescapeString(m[2]))
	}
	return p
}

// Authorize walks the pages with a fresh browser: sign in with key, then
// decide ("approve" or "deny") for org. It returns the URL the person is
// sent back to (the app's redirect URI with code and state, or an error).
func Authorize(t testing.TB, base, authURL, key, decision, org string) *url.URL {
	t.Helper()
	b, form := Consent(t, base, authURL, key)
	return Decide(t, b, base, form, decision, org)
}

// Consent signs in with key in a fresh browser and returns it with the
// consent page's form.
func Consent(t testing.TB, base, authURL, key string) (*http.Client, url.Values) {
	t.Helper()
	b := Browser(t)
	signin := Get(t, b, authURL)
	if signin.Status != http.StatusOK || signin.Form.Get("csrf") == "" {
		t.Fatalf("sign-in page: %d\n%s", signin.Status, signin.Body)
	}
	form := signin.Form
	form.Set("key", key)
	signedIn := Post(t, b, base, form)
	if signedIn.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", signedIn.Status, signedIn.Body)
	}
	consent := Get(t, b, base+signedIn.Header.Get("Location"))
	if consent.Status != http.StatusOK {
		t.Fatalf("consent page: %d\n%s", consent.Status, consent.Body)
	}
	return b, consent.Form
}

// Decide submits the consent form (a copy of it) with decision for org and
// returns the URL the person is sent back to.
func Decide(t testing.TB, b *http.Client, base string, consent url.Values, decision, org string) *url.URL {
	t.Helper()
	form := url.Values{}
	for k, v := range consent {
		form[k] = v
	}
	form.Set("action", decision)
	form.Set("org_id", org)
	decided := Post(t, b, base, form)
	if decided.Status != http.StatusSeeOther {
		t.Fatalf("%s: %d\n%s", decision, decided.Status, decided.Body)
	}
	back, err := url.Parse(decided.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return back
}
