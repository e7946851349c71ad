//go:build !linux

package finder

import "errors"

// loadClient runs only the closed loop here: the open loop's event loop
// is written for Linux (epoll, timerfd).
func loadClient(job clientJob) (clientResult, error) {
	if job.Rate > 0 {
		return clientResult{}, errors.New("client: the open loop needs Linux")
	}
	return closedLoop(job), nil
}
