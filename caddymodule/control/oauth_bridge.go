package control

import "github.com/conngate/conngate/store"

// Until store.Store embeds AppStore and GrantStore (being implemented in
// boltstore), the OAuth endpoints reach them through these. Removed once
// the store has them.
func (c *Control) apps() store.AppStore     { return c.store.(store.AppStore) }
func (c *Control) grants() store.GrantStore { return c.store.(store.GrantStore) }

// hasOAuthStore reports whether the store keeps apps and grants; the OAuth
// routes exist only then.
func (c *Control) hasOAuthStore() bool {
	_, apps := c.store.(store.AppStore)
	_, grants := c.store.(store.GrantStore)
	return apps && grants
}
