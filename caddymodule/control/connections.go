package control

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

func (c *Control) createConnection(w http.ResponseWriter, r *http.Request) error {
	var n store.NewConnection
	if err := decodeBody(w, r, &n); err != nil {
		return err
	}
	if err := n.Validate(); err != nil {
		return err
	}
	if err := allow(r, access{want: rightCreate, org: n.OrgID, newFor: n.UserID}); err != nil {
		return err
	}
	conn, err := c.store.Create(r.Context(), n, actorOf(r))
	if err != nil {
		return err
	}
	token, exp, err := c.tokens.issue(conn, time.Now())
	if err != nil {
		// The connection exists but nobody holds a token for it: say so
		// rather than pretend, and leave it to the caller to delete or retry.
		c.logger.Error("signing access token", zap.String("connection_id", conn.ID), zap.Error(err))
		return controlapi.Errorf(http.StatusInternalServerError, controlapi.CodeInternalError,
			"The connection %s was created but its access token could not be signed.", conn.ID)
	}
	c.logger.Info("connection created", zap.String("connection_id", conn.ID), zap.String("org_id", conn.OrgID), zap.Uint64("revision", conn.Revision))
	w.Header().Set("Location", controlapi.ConnectionPath(conn.ID))
	writeJSON(w, http.StatusCreated, controlapi.Created{Connection: conn, AccessToken: token, TokenType: "Bearer", ExpiresAt: exp})
	return nil
}

func (c *Control) listConnections(w http.ResponseWriter, r *http.Request) error {
	query, err := listQuery(r)
	if err != nil {
		return err
	}
	scope, err := scopeOf(principalOf(r), query.OrgID, rightList)
	if err != nil {
		return err
	}
	query.OrgID, query.UserID = scope.org, scope.userID
	conns, next, err := c.store.List(r.Context(), query)
	if err != nil {
		return err
	}
	if conns == nil {
		conns = []store.Connection{} // [] rather than null for clients
	}
	writeJSON(w, http.StatusOK, controlapi.ConnectionPage{Connections: conns, NextCursor: next})
	return nil
}

// listQuery reads GET /v1/connections?org_id=&status=&app_id=&q=&cursor=&limit=.
func listQuery(r *http.Request) (store.ListQuery, error) {
	q := r.URL.Query()
	query := store.ListQuery{OrgID: q.Get("org_id"), AppID: q.Get("app_id"), After: q.Get("cursor"), Search: q.Get("q")}
	if v := q.Get("status"); v != "" {
		for _, st := range strings.Split(v, ",") {
			if !store.Status(st).Valid() {
				return query, invalid("status must be active, disabled or deleted, or several of them separated by commas.")
			}
			query.Statuses = append(query.Statuses, store.Status(st))
		}
	}
	if utf8.RuneCountInString(query.Search) > store.MaxNameLength {
		return query, invalid("q must be at most " + strconv.Itoa(store.MaxNameLength) + " characters.")
	}
	if err := optionalID("org_id", query.OrgID); err != nil {
		return query, err
	}
	if err := optionalID("app_id", query.AppID); err != nil {
		return query, err
	}
	if err := optionalID("cursor", query.After); err != nil {
		return query, err
	}
	var err error
	query.Limit, err = limitParam(r)
	return query, err
}

func (c *Control) getConnection(w http.ResponseWriter, r *http.Request) error {
	conn, err := c.loadConnection(r)
	if err != nil {
		return err
	}
	if err := allow(r, access{want: rightView, conn: &conn}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, controlapi.ConnectionBody{Connection: conn})
	return nil
}

func (c *Control) getStatus(w http.ResponseWriter, r *http.Request) error {
	if err := allow(r, access{want: rightReadStatus}); err != nil {
		return err
	}
	conn, err := c.loadConnection(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, controlapi.StatusBody{ID: conn.ID, Status: conn.Status, Revision: conn.Revision})
	return nil
}

// loadConnection reads the connection named in the path.
func (c *Control) loadConnection(r *http.Request) (store.Connection, error) {
	id, err := pathID(r)
	if err != nil {
		return store.Connection{}, err
	}
	return c.store.Get(r.Context(), id)
}

func (c *Control) disableConnection(w http.ResponseWriter, r *http.Request) error {
	return c.apply(w, r, store.ActionDisable)
}

func (c *Control) enableConnection(w http.ResponseWriter, r *http.Request) error {
	return c.apply(w, r, store.ActionEnable)
}

func (c *Control) deleteConnection(w http.ResponseWriter, r *http.Request) error {
	return c.apply(w, r, store.ActionDelete)
}

// apply changes a connection's status; with ?wait=applied it answers once
// every subscribed gateway has applied the change, or at the timeout.
func (c *Control) apply(w http.ResponseWriter, r *http.Request, action store.Action) error {
	timeout, err := waitParams(r)
	if err != nil {
		return err
	}
	current, err := c.loadConnection(r)
	if err != nil {
		return err
	}
	if err := allow(r, access{want: rightFor[action], conn: &current}); err != nil {
		return err
	}
	conn, changed, err := c.store.Apply(r.Context(), current.ID, action, actorOf(r))
	if err != nil {
		return fmt.Errorf("applying %s to %s: %w", action, current.ID, err)
	}
	if changed {
		c.logger.Info("connection status changed", zap.String("connection_id", conn.ID), zap.String("action", string(action)),
			zap.String("status", string(conn.Status)), zap.Uint64("revision", conn.Revision))
	}
	if timeout == 0 {
		writeJSON(w, http.StatusOK, controlapi.ConnectionBody{Connection: conn})
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	total, pending := c.gateways.waitApplied(ctx, conn.Revision)
	writeJSON(w, http.StatusOK, controlapi.Applied{Connection: conn, Gateways: total, Acknowledged: total - len(pending), Pending: pending})
	return nil
}
