//go:build !linux

package finder

import "errors"

// loadClient's event loops are written for Linux (epoll, timerfd).
func loadClient(clientJob) (clientResult, error) {
	return clientResult{}, errors.New("client: the benchmark client needs Linux")
}
