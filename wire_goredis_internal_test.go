package redlock

import (
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/redlock-go/redlock/goredis"
)

// The go-redis wire, for the benchmarks that compare it with the default
// (rueidis, wire_rueidis.go).

// dial builds the go-redis client for one endpoint: redis.NewClient for a
// server, redis.NewFailoverClient for a Sentinel master, and
// redis.NewClusterClient for a cluster. The client does not connect until
// first used. It never retries a command (the algorithm does), bounds
// every call by the caller's context, dials once per attempt, and sends
// nothing on connect but HELLO (which any user may send) and SELECT for a
// database other than 0: no CLIENT SETINFO, no CLIENT MAINT_NOTIFICATIONS,
// and for a cluster only CLUSTER SLOTS, so that a minimal ACL suffices.
func dial(ep Endpoint, cfg Config) (Client, io.Closer, error) {
	if err := ep.validate(); err != nil {
		return nil, nil, invalidf("endpoint %s: %v", ep, err)
	}
	tlsCfg, err := ep.tlsConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: endpoint %s: %w", ErrInvalid, ep, err)
	}
	dialTimeout := ep.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = max(cfg.NodeTimeout, time.Second)
	}
	var rc redis.UniversalClient
	switch ep.kind() {
	case kindSentinel:
		rc = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:            ep.MasterName,
			SentinelAddrs:         ep.SentinelAddrs,
			SentinelUsername:      ep.SentinelUsername,
			SentinelPassword:      ep.SentinelPassword,
			Username:              ep.Username,
			Password:              ep.Password,
			DB:                    ep.DB,
			TLSConfig:             tlsCfg,
			DialTimeout:           dialTimeout,
			DialerRetries:         1,
			ReadTimeout:           ep.ReadTimeout,
			WriteTimeout:          ep.WriteTimeout,
			PoolSize:              ep.PoolSize,
			PipelinePoolSize:      -1,
			ContextTimeoutEnabled: true,
			MaxRetries:            -1,
			DisableIdentity:       true,
		})
	case kindCluster:
		rc = redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                    ep.ClusterAddrs,
			Username:                 ep.Username,
			Password:                 ep.Password,
			TLSConfig:                tlsCfg,
			DialTimeout:              dialTimeout,
			DialerRetries:            1,
			ReadTimeout:              ep.ReadTimeout,
			WriteTimeout:             ep.WriteTimeout,
			PoolSize:                 ep.PoolSize,
			PipelinePoolSize:         -1,
			ContextTimeoutEnabled:    true,
			MaxRetries:               -1,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			// A script call is routed by the slot of its one key. Routing
			// policies would first fetch COMMAND (under a timeout of its
			// own, and a command a minimal ACL denies).
			DisableRoutingPolicies: true,
		})
	default:
		network := ep.Network
		if network == "" {
			network = "tcp"
		}
		rc = redis.NewClient(&redis.Options{
			Network:                  network,
			Addr:                     ep.Addr,
			Username:                 ep.Username,
			Password:                 ep.Password,
			DB:                       ep.DB,
			TLSConfig:                tlsCfg,
			DialTimeout:              dialTimeout,
			DialerRetries:            1,
			ReadTimeout:              ep.ReadTimeout,
			WriteTimeout:             ep.WriteTimeout,
			PoolSize:                 ep.PoolSize,
			PipelinePoolSize:         -1,
			ContextTimeoutEnabled:    true,
			MaxRetries:               -1,
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		})
	}
	return goredis.New(rc), rc, nil
}
