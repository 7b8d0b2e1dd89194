package control

import (
	"context"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

// shared holds, per store, what every config on that store shares across
// reloads: a reload ends every change stream and the gateways reconnect
// within a second; a registry of the new config's own would know none of
// them meanwhile, and ?wait=applied would wait for nobody. The change feed
// and the stream counts are per store for the same reason.
var shared = caddy.NewUsagePool()

type sharedState struct {
	gateways *gatewayRegistry
	feed     *changeFeed
	streams  *streamLimiter
}

func (s *sharedState) Destruct() error {
	s.feed.close()
	s.gateways.close()
	return nil
}

// loadShared returns the state shared under key (the store's config),
// making it for st on first use. The settings given are those of the config
// provisioned last.
func loadShared(ctx context.Context, key string, st store.Store, retention time.Duration, logger *zap.Logger) (*sharedState, error) {
	v, _, err := shared.LoadOrNew(key, func() (caddy.Destructor, error) {
		reg := newGatewayRegistry(st, logger)
		reg.retention.Store(int64(retention))
		if err := reg.remember(ctx); err != nil {
			return nil, err
		}
		feed, err := newChangeFeed(ctx, st, logger)
		if err != nil {
			return nil, err
		}
		go reg.run()
		return &sharedState{gateways: reg, feed: feed, streams: newStreamLimiter()}, nil
	})
	if err != nil {
		return nil, err
	}
	state := v.(*sharedState)
	state.gateways.retention.Store(int64(retention))
	return state, nil
}
