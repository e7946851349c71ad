package redisstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// RouteLibraryLogs sends go-redis's own messages (dial failures, pub/sub
// reconnects), which otherwise go to stderr through a process-wide logger,
// to log at Debug level: the Store already reports what matters. go-redis
// allows only one such logger per process, so main calls this once.
func RouteLibraryLogs(log *slog.Logger) {
	redis.SetLogger(libLogger{log})
}

type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}
