package bench

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// fakeAMI is an AMI server that accepts any login and replays pre-rendered
// security events at a chosen rate, so the agent's event rate can be pushed
// beyond what the simulator's SIP stack produces.
type fakeAMI struct {
	ln     net.Listener
	events [][]byte // rendered events, cycled
	mu     sync.Mutex
	conn   net.Conn
	ready  chan struct{}
	once   sync.Once
}

func newFakeAMI(ln net.Listener, n int) *fakeAMI {
	f := &fakeAMI{ln: ln, ready: make(chan struct{})}
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000-0700")
	for i := 0; len(f.events) < n; i++ {
		// One failed attempt as Asterisk 22 raises it for a wrong password:
		// ChallengeSent, then ChallengeResponseFailed with the same Call-ID,
		// from 65,536 rotating sources of 198.19.0.0/16.
		src := fmt.Sprintf("IPV4/UDP/198.19.%d.%d/5060", (i>>8)&255, i&255)
		sess := fmt.Sprintf("%016x@198.19.%d.%d", i, (i>>8)&255, i&255)
		common := "Privilege: security,all\r\nSystemName: doorman\r\nEventTV: " + now + "\r\n"
		f.events = append(f.events, []byte("Event: ChallengeSent\r\n"+common+
			"Severity: Informational\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: 1001\r\nSessionID: "+sess+
			"\r\nLocalAddress: IPV4/UDP/198.18.0.1/5060\r\nRemoteAddress: "+src+"\r\nChallenge: 1795605993/ee9776fa1b6e3961d905d4ba6399d371\r\n\r\n"),
			[]byte("Event: ChallengeResponseFailed\r\n"+common+
				"Severity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: 1001\r\nSessionID: "+sess+
				"\r\nLocalAddress: IPV4/UDP/198.18.0.1/5060\r\nRemoteAddress: "+src+
				"\r\nChallenge: 1795605993/ee9776fa1b6e3961d905d4ba6399d371\r\nResponse: 0fe04711351f377a2399ff8c503e214d\r\nExpectedResponse: \r\n\r\n"))
	}
	go f.serve()
	return f
}

func (f *fakeAMI) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.session(c)
	}
}

// session answers every action with Success (echoing ActionID); after the
// login the connection becomes the one events are replayed on.
func (f *fakeAMI) session(c net.Conn) {
	defer c.Close()
	// Event replay and responses share the socket: writes hold f.mu.
	write := func(s string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		_, _ = c.Write([]byte(s))
	}
	write("Asterisk Call Manager/11.0.0\r\n")
	r := bufio.NewReader(c)
	var id, action string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if line != "" {
			k, v, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "actionid":
				id = strings.TrimSpace(v)
			case "action":
				action = strings.TrimSpace(v)
			}
			continue
		}
		write("Response: Success\r\nActionID: " + id + "\r\nMessage: ok\r\n\r\n")
		if strings.EqualFold(action, "Login") {
			f.mu.Lock()
			f.conn = c
			f.mu.Unlock()
			f.once.Do(func() { close(f.ready) })
		}
		id, action = "", ""
	}
}

// replay writes rate events per second for d, starting at event from; it
// returns how many it wrote.
func (f *fakeAMI) replay(rate int, d time.Duration, from int) (int, error) {
	<-f.ready
	f.mu.Lock()
	c := f.conn
	f.mu.Unlock()
	const tick = time.Millisecond
	start := time.Now()
	sent := 0
	var buf []byte
	for time.Since(start) < d {
		due := int(float64(rate) * time.Since(start).Seconds())
		buf = buf[:0]
		for ; sent < due; sent++ {
			buf = append(buf, f.events[(from+sent)%len(f.events)]...)
		}
		if len(buf) > 0 {
			f.mu.Lock()
			_, err := c.Write(buf)
			f.mu.Unlock()
			if err != nil {
				return sent, err
			}
		}
		time.Sleep(tick)
	}
	return sent, nil
}
