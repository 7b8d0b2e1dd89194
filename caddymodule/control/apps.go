package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// The apps API: OAuth 2.0 clients registered with the fields of RFC 7591.
// A confidential app's secret is shown in the answer that issues it and
// never again: the store keeps only its sha-256.

func (c *Control) createApp(w http.ResponseWriter, r *http.Request) error {
	var body controlapi.NewApp
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	n := store.NewApp{Name: body.ClientName, RedirectURIs: body.RedirectURIs, AuthMethod: body.TokenEndpointAuthMethod, OrgID: body.OrgID}
	if n.AuthMethod == "" {
		n.AuthMethod = store.AuthSecretBasic // RFC 7591 section 2's default
	}
	var secret string
	if n.AuthMethod.Confidential() {
		secret, n.SecretHash = newClientSecret()
	}
	if err := n.Validate(); err != nil {
		return err
	}
	if err := allow(r, access{want: rightRegisterApps, org: n.OrgID}); err != nil {
		return err
	}
	app, err := c.store.CreateApp(r.Context(), n, actorOf(r))
	if err != nil {
		return fmt.Errorf("registering app in %s: %w", n.OrgID, err)
	}
	c.logger.Info("app registered", zap.String("app_id", app.ID), zap.String("org_id", app.OrgID),
		zap.String("auth_method", string(app.AuthMethod)), zap.String("created_by", app.CreatedBy))
	answer := controlapi.AppOf(app)
	if secret != "" {
		answer = answer.WithSecret(secret)
	}
	w.Header().Set("Location", controlapi.AppPath(app.ID))
	writeJSON(w, http.StatusCreated, answer)
	return nil
}

func (c *Control) listApps(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	query := store.AppQuery{OrgID: q.Get("org_id"), After: q.Get("cursor")}
	if err := optionalID("org_id", query.OrgID); err != nil {
		return err
	}
	if err := optionalID("cursor", query.After); err != nil {
		return err
	}
	var err error
	if query.Limit, err = limitParam(r); err != nil {
		return err
	}
	scope, err := scopeOf(principalOf(r), query.OrgID, rightViewApps)
	if err != nil {
		return err
	}
	query.OrgID = scope.org
	apps, next, err := c.appPage(r.Context(), query, scope.userID)
	if err != nil {
		return fmt.Errorf("listing apps: %w", err)
	}
	page := controlapi.AppPage{Apps: make([]controlapi.App, 0, len(apps)), NextCursor: next}
	for _, a := range apps {
		page.Apps = append(page.Apps, controlapi.AppOf(a))
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// appPage reads one page of apps; with createdBy set, only the apps that
// principal registered. The store pages an organisation's apps, so it is
// read on until the page is full or the apps run out.
func (c *Control) appPage(ctx context.Context, q store.AppQuery, createdBy string) ([]store.App, string, error) {
	if createdBy == "" {
		return c.store.ListApps(ctx, q)
	}
	limit := q.Limit
	if limit == 0 {
		limit = store.DefaultListLimit
	}
	q.Limit = store.MaxListLimit
	var page []store.App
	for {
		apps, next, err := c.store.ListApps(ctx, q)
		if err != nil {
			return nil, "", err
		}
		for i, a := range apps {
			if a.CreatedBy != createdBy {
				continue
			}
			page = append(page, a)
			if len(page) == limit {
				if i == len(apps)-1 && next == "" {
					return page, "", nil
				}
				return page, a.ID, nil
			}
		}
		if next == "" {
			return page, "", nil
		}
		q.After = next
	}
}

func (c *Control) getApp(w http.ResponseWriter, r *http.Request) error {
	app, err := c.loadApp(r)
	if err != nil {
		return err
	}
	if err := allow(r, access{want: rightViewApps, app: &app}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, controlapi.AppOf(app))
	return nil
}

// deleteApp deletes the app and every connection made through it, in one
// store transaction; with ?wait=applied it answers once every subscribed
// gateway has applied the last of those deletions, or at the timeout.
func (c *Control) deleteApp(w http.ResponseWriter, r *http.Request) error {
	timeout, err := waitParams(r)
	if err != nil {
		return err
	}
	app, err := c.loadApp(r)
	if err != nil {
		return err
	}
	if err := allow(r, access{want: rightDeleteApps, app: &app}); err != nil {
		return err
	}
	deleted, err := c.store.DeleteApp(r.Context(), app.ID, actorOf(r))
	if errors.Is(err, store.ErrAppNotFound) {
		return appNotFound(app.ID) // deleted meanwhile by another request
	}
	if err != nil {
		return err
	}
	var revision uint64
	for _, conn := range deleted {
		c.logger.Info("connection status changed", zap.String("connection_id", conn.ID), zap.String("action", string(store.ActionDelete)),
			zap.String("status", string(conn.Status)), zap.Uint64("revision", conn.Revision), zap.String("app_id", app.ID))
		revision = max(revision, conn.Revision)
	}
	c.logger.Info("app deleted", zap.String("app_id", app.ID), zap.String("org_id", app.OrgID), zap.Int("connections_deleted", len(deleted)))
	visible := []store.Connection{} // [] rather than null for clients
	for _, conn := range deleted {
		if allow(r, access{want: rightView, conn: &conn}) == nil {
			visible = append(visible, conn)
		}
	}
	answer := controlapi.AppDeleted{App: controlapi.AppOf(app), ConnectionsDeleted: len(deleted), Connections: visible}
	if timeout != 0 {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		total, pending := c.gateways.waitApplied(ctx, revision)
		answer.Propagation = &controlapi.Propagation{Gateways: total, Acknowledged: total - len(pending), Pending: pending}
	}
	writeJSON(w, http.StatusOK, answer)
	return nil
}

// rotateAppSecret issues a confidential app a new client secret; the old
// one stops working at once.
func (c *Control) rotateAppSecret(w http.ResponseWriter, r *http.Request) error {
	app, err := c.loadApp(r)
	if err != nil {
		return err
	}
	if err := allow(r, access{want: rightRotateSecrets, app: &app}); err != nil {
		return err
	}
	if !app.AuthMethod.Confidential() {
		return controlapi.Errorf(http.StatusConflict, controlapi.CodePublicClient,
			"App %s is a public client (token_endpoint_auth_method none): it has no client secret to rotate.", app.ID)
	}
	secret, hash := newClientSecret()
	app, err = c.store.SetAppSecret(r.Context(), app.ID, hash)
	if errors.Is(err, store.ErrAppNotFound) {
		return appNotFound(app.ID) // deleted meanwhile by another request
	}
	if err != nil {
		return err
	}
	c.logger.Info("app secret rotated", zap.String("app_id", app.ID), zap.String("by", actorOf(r).ID))
	writeJSON(w, http.StatusOK, controlapi.AppOf(app).WithSecret(secret))
	return nil
}

// loadApp reads the app named in the path.
func (c *Control) loadApp(r *http.Request) (store.App, error) {
	id := r.PathValue("id")
	if err := validID("client_id", id); err != nil {
		return store.App{}, err
	}
	app, err := c.store.GetApp(r.Context(), id)
	if errors.Is(err, store.ErrAppNotFound) {
		return store.App{}, appNotFound(id)
	}
	return app, err
}

// newClientSecret returns a new client secret, 32 random bytes in
// base64url (safe in a form-encoded Basic header), and its sha-256, which
// is all that is stored.
func newClientSecret() (secret string, hash []byte) {
	secret = newOpaqueToken()
	return secret, hashToken(secret)
}

func appNotFound(id string) *controlapi.Error {
	return &controlapi.Error{Status: http.StatusNotFound, Code: controlapi.CodeAppNotFound, Message: "No app has client_id " + id + "."}
}
