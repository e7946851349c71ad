package asterisksim

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/ari"
)

// kv is one AMI header; order matters, so events keep a slice.
type kv struct{ k, v string }

// amiEvent is an unsolicited AMI event as the manager renders it:
// "Event:", "Privilege:", "SystemName:" (unless noSystemName), then fields.
type amiEvent struct {
	name         string
	class        string // permission class: security, system, call, user
	noSystemName bool   // FullyBooted carries no SystemName
	fields       []kv
}

// render writes the event with CRLF framing, as main/manager.c does.
func (e *amiEvent) render(systemName string) []byte {
	var b strings.Builder
	b.WriteString("Event: " + e.name + "\r\n")
	b.WriteString("Privilege: " + e.class + ",all\r\n")
	if !e.noSystemName {
		b.WriteString("SystemName: " + systemName + "\r\n")
	}
	for _, f := range e.fields {
		if f.k == "" { // a raw header line (UserEvent copies them)
			b.WriteString(f.v + "\r\n")
			continue
		}
		b.WriteString(f.k + ": " + f.v + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// secEvent is a security event (main/security_events.c) before rendering;
// the same value feeds AMI and the security log.
type secEvent struct {
	name      string
	time      time.Time
	severity  string // Informational, Error
	service   string // AMI, PJSIP
	version   string
	accountID string
	hasAcct   bool // AccountID printed in the common block
	sessionID string
	local     string // IPV4/UDP/127.0.0.1/5060
	remote    string
	extra     []kv // event-specific fields, in order
	sessionTV *time.Time
	tailAcct  bool // RequestBadFormat prints AccountID last
}

func (s *secEvent) fields() []kv {
	f := []kv{
		{"EventTV", formatTV(s.time)},
		{"Severity", s.severity},
		{"Service", s.service},
		{"EventVersion", s.version},
	}
	if s.hasAcct && !s.tailAcct {
		f = append(f, kv{"AccountID", s.accountID})
	}
	f = append(f, kv{"SessionID", s.sessionID}, kv{"LocalAddress", s.local}, kv{"RemoteAddress", s.remote})
	f = append(f, s.extra...)
	if s.sessionTV != nil {
		f = append(f, kv{"SessionTV", formatTV(*s.sessionTV)})
	}
	if s.tailAcct {
		f = append(f, kv{"AccountID", s.accountID})
	}
	return f
}

func (s *secEvent) ami() *amiEvent {
	return &amiEvent{name: s.name, class: "security", fields: s.fields()}
}

// logLine renders the res_security_log.c line of the security log file.
func (s *secEvent) logLine(logTime time.Time, tid int) string {
	var b strings.Builder
	b.WriteString("[" + logTime.Local().Format("2006-01-02 15:04:05.000") + "] SECURITY[")
	b.WriteString(strconv.Itoa(tid))
	b.WriteString("] res_security_log.c: SecurityEvent=\"" + s.name + "\"")
	for _, f := range s.fields() {
		b.WriteString("," + f.k + "=\"" + f.v + "\"")
	}
	b.WriteString("\n")
	return b.String()
}

// formatTV is Asterisk's ast_tvtostr-like security timestamp:
// 2026-11-25T11:26:33.016+0000 (local time, millisecond precision).
func formatTV(t time.Time) string {
	return t.Local().Format("2006-01-02T15:04:05.000-0700")
}

var zeroTV = time.Unix(0, 0)

// event is what the hub carries: its AMI form, its ARI form, and for
// security events the source used by the security log.
type event struct {
	ami    *amiEvent
	ari    *ari.Event
	sec    *secEvent
	notice *notice
}

// notice is a NOTICE line of the messages log.
type notice struct {
	tid    int
	source string // e.g. "manager.c", "res_pjsip/pjsip_distributor.c"
	text   string
}

func (n *notice) logLine(t time.Time) string {
	return "[" + t.Local().Format("2006-01-02 15:04:05.000") + "] NOTICE[" + strconv.Itoa(n.tid) + "] " + n.source + ": " + n.text + "\n"
}

// hub fans events out to subscribers in emit order. Subscribers must not block.
type hub struct {
	mu   sync.Mutex
	next int
	subs map[int]func(event)
}

func newHub() *hub { return &hub{subs: map[int]func(event){}} }

func (h *hub) subscribe(fn func(event)) func() {
	h.mu.Lock()
	id := h.next
	h.next++
	h.subs[id] = fn
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.subs, id)
		h.mu.Unlock()
	}
}

// emit delivers synchronously so every subscriber sees one global order.
func (h *hub) emit(e event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids := make([]int, 0, len(h.subs))
	for id := range h.subs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		h.subs[id](e)
	}
}
