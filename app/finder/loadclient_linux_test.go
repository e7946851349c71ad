package finder

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// loadClient plays Asterisk for job.N sessions with epoll loops, each on
// an OS thread of its own, the way a C program would: non-blocking
// sockets, a timerfd for the open loop's schedule, prebuilt environments,
// replies written raw. Asterisk runs each FastAGI session in its channel's
// thread, in C; the goroutine-per-session client used before cost more CPU
// per session and added its own scheduling delays to every figure (its
// lateness alone had an open-loop p99 of 1.2 ms on this project's two
// cores, against 0.06 ms for the event loop).
func loadClient(job clientJob) (clientResult, error) {
	ap, err := netip.ParseAddrPort(job.Addr)
	if err != nil {
		return clientResult{}, fmt.Errorf("client: address: %w", err)
	}
	if job.Rate > 0 {
		return runLoop(ap, job)
	}
	// The closed loop runs one event loop per core the client may use, each
	// with its share of the clients and sessions.
	k := min(runtime.GOMAXPROCS(0), job.Clients, job.N)
	res := make([]clientResult, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for t := range k {
		part := job
		part.Clients = job.Clients / k
		part.N = job.N / k
		if t == 0 {
			part.Clients += job.Clients % k
			part.N += job.N % k
		}
		wg.Go(func() { res[t], errs[t] = runLoop(ap, part) })
	}
	wg.Wait()
	var all clientResult
	for t := range k {
		if errs[t] != nil {
			return clientResult{}, errs[t]
		}
		all.Seconds = max(all.Seconds, res[t].Seconds)
		all.Failed += res[t].Failed
		if all.FirstErr == "" {
			all.FirstErr = res[t].FirstErr
		}
	}
	return all, nil
}

// runLoop runs job on one event loop, on an OS thread of its own.
func runLoop(ap netip.AddrPort, job clientJob) (clientResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	l, err := newLoop(ap, job)
	if err != nil {
		return clientResult{}, err
	}
	defer l.close()
	return l.run()
}

// session is one FastAGI conversation in flight.
type session struct {
	i    int // which session: its due time and result slot
	fd   int
	sent bool // the environment is out
	ok   bool // dialStatus was LOCAL or REMOTE
	n    int  // bytes in buf
	buf  [512]byte
}

type loop struct {
	job      clientJob
	sa       unix.Sockaddr
	ep, tfd  int
	envs     [][]byte
	live     map[int]*session // by fd
	free     []*session
	start    time.Time
	interval time.Duration
	next     int // next session to start
	done     int
	lat, lag []time.Duration
	failed   int64
	firstErr string
}

func newLoop(ap netip.AddrPort, job clientJob) (*loop, error) {
	if !ap.Addr().Is4() {
		return nil, fmt.Errorf("client: %s: IPv4 only", ap)
	}
	l := &loop{job: job, sa: &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()},
		live: map[int]*session{}, ep: -1, tfd: -1, envs: benchEnvs()}
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("client: epoll: %w", err)
	}
	if job.Rate == 0 {
		return l, nil // closed loop: no schedule
	}
	l.interval = time.Second / time.Duration(job.Rate)
	l.lat, l.lag = make([]time.Duration, job.N), make([]time.Duration, job.N)
	if l.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err == nil {
		err = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.tfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.tfd)})
	}
	if err != nil {
		l.close()
		return nil, fmt.Errorf("client: timerfd: %w", err)
	}
	return l, nil
}

func (l *loop) close() {
	for fd := range l.live {
		unix.Close(fd)
	}
	if l.tfd >= 0 {
		unix.Close(l.tfd)
	}
	if l.ep >= 0 {
		unix.Close(l.ep)
	}
}

func (l *loop) run() (clientResult, error) {
	events := make([]unix.EpollEvent, 256)
	l.start = time.Now()
	last := l.start // the last progress, for the watchdog
	for l.done < l.job.N {
		if l.job.Rate > 0 {
			if err := l.startDue(); err != nil {
				return clientResult{}, err
			}
		} else {
			for len(l.live) < l.job.Clients && l.next < l.job.N {
				l.begin()
			}
		}
		n, err := unix.EpollWait(l.ep, events, 1000)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return clientResult{}, fmt.Errorf("client: epoll_wait: %w", err)
		}
		before := l.done
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == l.tfd {
				var b [8]byte
				_, _ = unix.Read(l.tfd, b[:]) // re-armed by startDue
				continue
			}
			if s := l.live[int(ev.Fd)]; s != nil {
				l.step(s)
			}
		}
		if l.done > before || n > 0 {
			last = time.Now()
		} else if time.Since(last) > time.Minute {
			return clientResult{}, fmt.Errorf("client: no progress for a minute, %d of %d sessions done, %d in flight", l.done, l.job.N, len(l.live))
		}
	}
	res := clientResult{Seconds: time.Since(l.start).Seconds(), Failed: l.failed, FirstErr: l.firstErr}
	if l.job.Rate > 0 {
		slices.Sort(l.lat)
		slices.Sort(l.lag)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		res.P50, res.P99, res.Max = ms(l.lat[l.job.N/2]), ms(l.lat[l.job.N*99/100]), ms(l.lat[l.job.N-1])
		res.LagP99 = ms(l.lag[l.job.N*99/100])
	}
	return res, nil
}

// due is session i's scheduled start in the open loop.
func (l *loop) due(i int) time.Time { return l.start.Add(time.Duration(i) * l.interval) }

// startDue starts every session whose time has come and arms the timer for
// the next one.
func (l *loop) startDue() error {
	now := time.Now()
	for l.next < l.job.N && !l.due(l.next).After(now) {
		l.lag[l.next] = now.Sub(l.due(l.next))
		l.begin()
	}
	if l.next == l.job.N {
		return nil
	}
	wait := l.due(l.next).Sub(now)
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(wait))}
	if err := unix.TimerfdSettime(l.tfd, 0, &spec, nil); err != nil {
		return fmt.Errorf("client: timerfd: %w", err)
	}
	return nil
}

// begin connects session l.next and sends its environment at once
// (loopback connects within the call, mostly) or when the socket turns
// writable.
func (l *loop) begin() {
	i := l.next
	l.next++
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		l.finish(nil, i, fmt.Errorf("socket: %w", err))
		return
	}
	if err := unix.Connect(fd, l.sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		l.finish(nil, i, fmt.Errorf("connect: %w", err))
		return
	}
	s := l.session()
	*s = session{i: i, fd: fd}
	l.live[fd] = s
	ev := uint32(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET)
	if err := l.send(s); err != nil {
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ENOTCONN) {
			l.finish(s, i, err)
			return
		}
		ev |= unix.EPOLLOUT // still connecting
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: ev, Fd: int32(fd)}); err != nil {
		l.finish(s, i, fmt.Errorf("epoll add: %w", err))
	}
}

// send writes s's environment (it fits any socket buffer: one write).
func (l *loop) send(s *session) error {
	if _, err := unix.Write(s.fd, l.envs[s.i%len(l.envs)]); err != nil {
		return err
	}
	s.sent = true
	return nil
}

func (l *loop) session() *session {
	if k := len(l.free); k > 0 {
		s := l.free[k-1]
		l.free = l.free[:k-1]
		return s
	}
	return new(session)
}

// step advances s after epoll reported it ready: it sends the environment
// if the connect had not completed, then answers every command line with
// "200 result=1" until the server closes.
func (l *loop) step(s *session) {
	if !s.sent {
		if err := l.send(s); err != nil {
			if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ENOTCONN) {
				l.finish(s, s.i, fmt.Errorf("write: %w", err))
			}
			return
		}
	}
	for {
		m, err := unix.Read(s.fd, s.buf[s.n:])
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil {
			l.finish(s, s.i, fmt.Errorf("read: %w", err))
			return
		}
		if m == 0 {
			if !s.ok {
				err = errors.New("session ended without dialStatus")
			}
			l.finish(s, s.i, err)
			return
		}
		s.n += m
		lines := 0
		for {
			k := bytes.IndexByte(s.buf[:s.n], '\n')
			if k < 0 {
				break
			}
			if st, found := bytes.CutPrefix(s.buf[:k], statusPrefix); found {
				s.ok = string(st) == StatusLocal+`"` || string(st) == StatusRemote+`"`
				if !s.ok {
					l.finish(s, s.i, fmt.Errorf("dialStatus %s", st))
					return
				}
			}
			lines++
			s.n = copy(s.buf[:], s.buf[k+1:s.n])
		}
		if lines > 0 {
			if _, err := unix.Write(s.fd, replies200[:13*min(lines, 3)]); err != nil {
				l.finish(s, s.i, fmt.Errorf("write: %w", err))
				return
			}
		}
		if s.n == len(s.buf) {
			l.finish(s, s.i, errors.New("line longer than the buffer"))
			return
		}
	}
}

// finish ends session i (s is nil when it never got a socket), recording
// its latency or its error.
func (l *loop) finish(s *session, i int, err error) {
	if s != nil {
		delete(l.live, s.fd)
		unix.Close(s.fd) // also leaves the epoll set
		l.free = append(l.free, s)
	}
	l.done++
	if l.job.Rate > 0 {
		l.lat[i] = time.Since(l.due(i))
	}
	if err != nil {
		l.failed++
		if l.firstErr == "" {
			l.firstErr = err.Error()
		}
	}
}
