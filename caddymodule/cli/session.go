package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// session is one command run: where to send requests, with which key, and
// where to write.
type session struct {
	cmd      *cobra.Command
	endpoint string
	key      string
	json     bool
	client   *http.Client
	in       io.Reader
	out      io.Writer
	errOut   io.Writer
}

func newSession(cmd *cobra.Command) (*session, int, error) {
	s := &session{cmd: cmd, client: &http.Client{Timeout: 30 * time.Second}, in: cmd.InOrStdin(), out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
	s.endpoint, _ = cmd.Flags().GetString("endpoint")
	s.key, _ = cmd.Flags().GetString("key")
	s.json, _ = cmd.Flags().GetBool("json")
	if s.endpoint == "" {
		s.endpoint = os.Getenv("CONNGATE_ENDPOINT")
	}
	if s.endpoint == "" {
		s.endpoint = "http://127.0.0.1:9180"
	}
	s.endpoint = strings.TrimRight(s.endpoint, "/")
	if s.key == "" {
		s.key = os.Getenv("CONNGATE_KEY")
	}
	if s.key == "" {
		s.key = os.Getenv("CONNGATE_ADMIN_KEY")
	}
	if s.key == "" && cmd.Name() != "new-key" {
		return nil, exitUnauthorized, errors.New("no API key: pass --key or set CONNGATE_KEY")
	}
	return s, exitOK, nil
}

// call sends a request and decodes a 2xx answer into out. On an error
// answer it returns the exit code for its status and the API's message.
func (s *session) call(method, path string, body, out any) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, exitFailed, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.endpoint+path, rd)
	if err != nil {
		return nil, exitUsage, err
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, exitFailed, fmt.Errorf("reaching %s: %w", s.endpoint, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, exitFailed, err
	}
	if resp.StatusCode/100 == 2 {
		if out != nil {
			if err := json.Unmarshal(raw, out); err != nil {
				return nil, exitFailed, fmt.Errorf("unexpected answer: %w", err)
			}
		}
		return raw, exitOK, nil
	}
	apiErr := &controlapi.Error{Status: resp.StatusCode}
	if err := json.Unmarshal(raw, apiErr); err != nil || apiErr.Code == "" {
		return nil, exitForStatus(resp.StatusCode), fmt.Errorf("unexpected answer: %s", resp.Status)
	}
	return nil, exitForStatus(resp.StatusCode), apiErr
}

// pagePath is a listing's path with the query the filter flags (flag name
// -> query parameter) and the paging flags --cursor and --limit ask for.
func (s *session) pagePath(path string, filters map[string]string) string {
	q := url.Values{}
	filters["cursor"] = "cursor"
	for flag, param := range filters {
		if v, _ := s.cmd.Flags().GetString(flag); v != "" {
			q.Set(param, v)
		}
	}
	if n, _ := s.cmd.Flags().GetInt("limit"); n != 0 {
		q.Set("limit", fmt.Sprint(n))
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

func (s *session) print(raw []byte) (int, error) {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return exitFailed, err
	}
	fmt.Fprintln(s.out, buf.String())
	return exitOK, nil
}

func (s *session) table(rows ...[]string) {
	tw := tabwriter.NewWriter(s.out, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// confirmed asks prompt on stderr and reports whether the answer was yes;
// --yes answers for the user.
func (s *session) confirmed(prompt string) bool {
	if yes, _ := s.cmd.Flags().GetBool("yes"); yes {
		return true
	}
	fmt.Fprint(s.errOut, prompt)
	answer, _ := bufio.NewReader(s.in).ReadString('\n')
	return strings.TrimSpace(answer) == "yes"
}
