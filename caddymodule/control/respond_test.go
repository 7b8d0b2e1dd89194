package control

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// A store that cannot be reached is a 503 the client may retry, never a 500
// or a silent success; one whose connection was lost during a commit says
// the outcome is unknown.
func TestStoreOutagesAre503(t *testing.T) {
	c := &Control{logger: zap.NewNop()}
	for _, tt := range []struct {
		err         error
		status      int
		code        controlapi.Code
		retryAfter  string
		messageHint string
	}{
		{fmt.Errorf("applying: %w", fmt.Errorf("PostgreSQL is unreachable; nothing was written: %w", store.ErrUnavailable)), 503, controlapi.CodeStoreUnavailable, "1", "nothing was changed"},
		{fmt.Errorf("applying: %w", store.ErrOutcomeUnknown), 503, controlapi.CodeStoreUnavailable, "1", "may or may not"},
		{fmt.Errorf("something else"), 500, controlapi.CodeInternalError, "", ""},
	} {
		w := httptest.NewRecorder()
		c.writeError(w, httptest.NewRequest(http.MethodPost, "/v1/connections/c1/disable", nil), tt.err)
		var body controlapi.Error
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != tt.status || body.Code != tt.code || w.Header().Get("Retry-After") != tt.retryAfter {
			t.Errorf("%v: %d %s Retry-After %q, want %d %s %q", tt.err, w.Code, body.Code, w.Header().Get("Retry-After"), tt.status, tt.code, tt.retryAfter)
		}
		if !strings.Contains(body.Message, tt.messageHint) {
			t.Errorf("%v: message %q lacks %q", tt.err, body.Message, tt.messageHint)
		}
	}
}
