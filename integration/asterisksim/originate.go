package asterisksim

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asterisksupport/doorman/integration/asterisksim/agi"
)

// AMI Originate of a Local channel into the e2e test context, and Command
// "core restart now": what the end-to-end suite uses against a real Asterisk
// for "start a FastAGI session" and "restart", so that its real-server code
// path can run against simulators too.
//
// No capture of either exists in shared/asterisk-transcripts: the replies and
// events below follow Asterisk's documentation and source (main/manager.c
// action_originate and action_command, res_agi.c AGIExecStart/AGIExecEnd,
// app_userevent.c), not recorded bytes.

// E2EContext is the one dialplan context the simulator can run from an
// Originate: asterisk-conf/test-extensions.conf's, hard-wired here as
//
//	exten => agi,1,Answer()
//	 same => n,AGI(${BASE64_DECODE(${E2E_AGI})})
//	 same => n,UserEvent(DoormanE2E,ID: ${E2E_ID},AGISTATUS: ${AGISTATUS},dialStatus: ${dialStatus},dialString: ${BASE64_ENCODE(${dialString})})
//	 same => n,Hangup()
const E2EContext = "doorman-e2e"

// E2EExten is the extension of E2EContext.
const E2EExten = "agi"

var localChans atomic.Int64

// originateLocal parses "Local/<exten>@<context>[/options]".
func originateLocal(channel string) (exten, context string, ok bool) {
	rest, ok := strings.CutPrefix(channel, "Local/")
	if !ok {
		return "", "", false
	}
	rest, _, _ = strings.Cut(rest, "/")
	exten, context, ok = strings.Cut(rest, "@")
	return exten, context, ok && exten != "" && context != ""
}

// originateVars reads every Variable header; like astman_get_variables_order
// it splits each on commas into name=value pairs.
func originateVars(m *amiMessage) map[string]string {
	vars := map[string]string{}
	for _, l := range m.lines {
		if !hasPrefixFold(l, "Variable:") {
			continue
		}
		for _, pair := range strings.Split(strings.TrimSpace(l[len("Variable:"):]), ",") {
			if k, v, ok := strings.Cut(pair, "="); ok && k != "" {
				vars[k] = v
			}
		}
	}
	return vars
}

func (s *amiSession) originate(m *amiMessage) bool {
	channel := m.get("Channel")
	if channel == "" {
		return s.write(resp(m, "Error", "Channel not specified"))
	}
	if ep, ok := strings.CutPrefix(channel, "PJSIP/"); ok {
		return s.originatePJSIP(m, ep)
	}
	exten, context, ok := originateLocal(channel)
	if !ok || exten != E2EExten || context != E2EContext || s.c.runAGI == nil {
		// Anything else would need channels the simulator does not have.
		return s.write(resp(m, "Error", "Originate failed"))
	}
	vars := originateVars(m)
	n := localChans.Add(1)
	call := localCall{
		c:        s.c,
		actionID: m.get("ActionID"),
		one:      fmt.Sprintf("Local/%s@%s-%08x;1", exten, context, n),
		two:      fmt.Sprintf("Local/%s@%s-%08x;2", exten, context, n),
		uniqueID: fmt.Sprintf("%d.%d", s.c.now().Unix(), 2*n),
		app:      m.get("Application"),
		data:     m.get("Data"),
		vars:     vars,
	}
	ok = s.write(resp(m, "Success", "Originate successfully queued"))
	call.c.goLocal(call.run) // false only while stopping: the AMI connection is going too
	return ok
}

// localCall is the ;2 half of the Local channel running the e2e context.
type localCall struct {
	c                   *core
	actionID, one, two  string
	uniqueID, app, data string
	vars                map[string]string
	commandID           int
}

// snapshot is the channel part of the events of ;2 (state Up after Answer).
func (l *localCall) snapshot(priority string) []kv {
	return []kv{{"Channel", l.two}, {"ChannelState", "6"}, {"ChannelStateDesc", "Up"},
		{"CallerIDNum", "<unknown>"}, {"CallerIDName", "<unknown>"}, {"ConnectedLineNum", "<unknown>"},
		{"ConnectedLineName", "<unknown>"}, {"Language", "en"}, {"AccountCode", ""}, {"Context", E2EContext},
		{"Exten", E2EExten}, {"Priority", priority}, {"Uniqueid", l.uniqueID}, {"Linkedid", l.uniqueID}}
}

// run plays the e2e context until the AGI session ends or ctx (the running
// simulator's) does.
func (l *localCall) run(ctx context.Context) {
	// Answer() on ;2 answers ;1: the Originate is done.
	l.c.emit(event{ami: originateResponse(l.actionID, true, l.one, "", "", l.app, l.data, reasonAnswered, l.uniqueID)})

	appData := ""
	if b, err := base64.StdEncoding.DecodeString(l.vars["E2E_AGI"]); err == nil {
		appData = string(b)
	}
	ch := agi.Channel{Name: l.two, UniqueID: l.uniqueID, Context: E2EContext, Extension: E2EExten,
		Priority: "2", State: 6, Vars: l.vars}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := l.c.runAGI(ctx, appData, ch, agi.WithCommandHook(l.agiEvents))
	if err != nil {
		l.c.log.Debug("originate: AGI", "channel", l.two, "err", err)
	}
	vars := map[string]string{"AGISTATUS": "FAILURE"}
	if res != nil {
		vars = res.Vars
	}
	ue := append(l.snapshot("3"), kv{"UserEvent", "DoormanE2E"},
		kv{"", "ID: " + vars["E2E_ID"]}, kv{"", "AGISTATUS: " + vars["AGISTATUS"]},
		kv{"", "dialStatus: " + vars["dialStatus"]},
		kv{"", "dialString: " + base64.StdEncoding.EncodeToString([]byte(vars["dialString"]))})
	l.c.emit(event{ami: &amiEvent{name: "UserEvent", class: "user", fields: ue}})
}

// agiEvents raises AGIExecStart and AGIExecEnd for one command, as res_agi
// publishes them around agi_handle_command.
func (l *localCall) agiEvents(line, reply string) {
	l.commandID++
	id := itoa(l.commandID)
	start := append(l.snapshot("2"), kv{"Command", line}, kv{"CommandId", id})
	l.c.emit(event{ami: &amiEvent{name: "AGIExecStart", class: "agi", fields: start}})
	code, result := "200", "Success"
	switch {
	case strings.HasPrefix(reply, "510"):
		code, result = "510", "Invalid or unknown command"
	case strings.HasPrefix(reply, "511"):
		code, result = "511", "Command Not Permitted"
	case strings.HasPrefix(reply, "520"):
		code, result = "520", "Usage"
	}
	end := append(l.snapshot("2"), kv{"Command", line}, kv{"CommandId", id}, kv{"ResultCode", code}, kv{"Result", result})
	l.c.emit(event{ami: &amiEvent{name: "AGIExecEnd", class: "agi", fields: end}})
}

// originatePJSIP is Originate of PJSIP/<endpoint> (calls.go). Async
// answers "queued" at once and OriginateResponse later; otherwise the
// action waits for the outcome, as manager.c's does.
func (s *amiSession) originatePJSIP(m *amiMessage, endpoint string) bool {
	endpoint, _, _ = strings.Cut(endpoint, "/")
	if endpoint == "" {
		return s.write(resp(m, "Error", "Originate failed"))
	}
	if isTrue(m.get("Async")) {
		ok := s.write(resp(m, "Success", "Originate successfully queued"))
		s.c.originatePJSIP(endpoint, m, nil)
		return ok
	}
	result := make(chan bool, 1)
	s.c.originatePJSIP(endpoint, m, func(ok bool) { result <- ok })
	if <-result {
		return s.write(resp(m, "Success", "Originate successfully queued"))
	}
	return s.write(resp(m, "Error", "Originate failed"))
}

// isTrue is ast_true.
func isTrue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "y", "t", "1", "on":
		return true
	}
	return false
}

// command is the Command action: "core restart now" restarts the simulator
// (the connection drops, as the real process re-executes itself); any other
// CLI command is unknown here.
func (s *amiSession) command(m *amiMessage) bool {
	cmd := strings.Join(strings.Fields(m.get("Command")), " ")
	if cmd == "" {
		return s.write(resp(m, "Error", "No command provided"))
	}
	if strings.EqualFold(cmd, "core restart now") && s.c.restart != nil {
		ok := s.write(resp(m, "Success", "Command output follows", kv{"Output", ""}))
		s.c.restart()
		return ok
	}
	return s.write(resp(m, "Error", "Command output follows",
		kv{"Output", fmt.Sprintf("No such command '%s' (type 'core show help %s' for other possible commands)", cmd, cmd)}))
}
