package asterisksim

import (
	"fmt"
	"strings"
)

// AMI actions other than authentication, with main/manager.c's and
// res_pjsip's reply formats.

// ---- simple actions ----

func (s *amiSession) ping(m *amiMessage) bool {
	now := s.c.now()
	return s.write(resp(m, "Success", "", kv{"Ping", "Pong"}, kv{"Timestamp", fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)}))
}

func (s *amiSession) eventsAction(m *amiMessage) bool {
	s.mu.Lock()
	r := s.setEventMask(m.get("EventMask"), false)
	s.mu.Unlock()
	switch r {
	case 1:
		return s.write(resp(m, "Success", "", kv{"Events", "On"}))
	case 0:
		return s.write(resp(m, "Success", "", kv{"Events", "Off"}))
	}
	return s.write(resp(m, "Error", "Invalid event mask"))
}

func (s *amiSession) userEvent(m *amiMessage) bool {
	name := m.get("UserEvent")
	fields := []kv{{"UserEvent", name}}
	for _, l := range m.lines {
		if hasPrefixFold(l, "UserEvent:") || hasPrefixFold(l, "Action:") {
			continue
		}
		fields = append(fields, kv{"", l})
	}
	ok := s.write(resp(m, "Success", "Event Sent"))
	s.c.emit(event{ami: &amiEvent{name: "UserEvent", class: "user", fields: fields}})
	return ok
}

func hasPrefixFold(s, p string) bool { return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) }

func (s *amiSession) coreSettings(m *amiMessage) bool {
	cfg := s.c.cfg
	return s.write(resp(m, "Success", "",
		kv{"AMIversion", "11.0.0"}, kv{"AsteriskVersion", cfg.Version}, kv{"SystemName", cfg.SystemName},
		kv{"CoreMaxCalls", "0"}, kv{"CoreMaxLoadAvg", "0.000000"}, kv{"CoreRunUser", ""}, kv{"CoreRunGroup", ""},
		kv{"CoreMaxFilehandles", "0"}, kv{"CoreRealTimeEnabled", "No"}, kv{"CoreCDRenabled", "No"},
		kv{"CoreHTTPenabled", "No"}, kv{"SoundsSearchCustomDir", "No"}))
}

func (s *amiSession) coreStatus(m *amiMessage) bool {
	s.c.mu.Lock()
	boot := s.c.boot.Local()
	s.c.mu.Unlock()
	return s.write(resp(m, "Success", "",
		kv{"CoreStartupDate", boot.Format("2006-01-02")}, kv{"CoreStartupTime", boot.Format("15:04:05")},
		kv{"CoreReloadDate", boot.Format("2006-01-02")}, kv{"CoreReloadTime", boot.Format("15:04:05")},
		kv{"CoreCurrentCalls", "0"}, kv{"CoreProcessedCalls", "0"}))
}

func (s *amiSession) getvar(m *amiMessage) bool {
	v := m.get("Variable")
	if v == "" {
		return s.write(resp(m, "Error", "No variable specified"))
	}
	if ch := m.get("Channel"); ch != "" {
		return s.write(resp(m, "Error", "No such channel"))
	}
	return s.write(resp(m, "Success", "", kv{"Variable", v}, kv{"Value", ""}))
}

// ---- lists ----

func (s *amiSession) listStart(m *amiMessage, msg string) []byte {
	return resp(m, "Success", "", kv{"EventList", "start"}, kv{"Message", msg})
}

func listComplete(name, actionID string, n int) []byte {
	return listItem(name, actionID, []kv{{"EventList", "Complete"}, {"ListItems", itoa(n)}})
}

func (s *amiSession) showContacts(m *amiMessage) bool {
	id := m.get("ActionID")
	s.c.mu.Lock()
	var items [][]byte
	for _, ep := range s.c.endpointNames() {
		ct := s.c.contacts[ep]
		if ct == nil {
			continue
		}
		items = append(items, listItem("ContactList", id, []kv{
			{"ObjectType", "contact"}, {"ObjectName", ct.AOR + ";@" + md5hex(ct.URI)},
			{"ViaAddr", ct.ViaAddr}, {"QualifyTimeout", "3.000000"}, {"Qualify2xxOnly", "false"},
			{"CallId", ct.CallID}, {"RegServer", s.c.cfg.SystemName}, {"PruneOnBoot", "no"}, {"Path", ""},
			{"Endpoint", ct.AOR}, {"ViaPort", ct.ViaPort}, {"AuthenticateQualify", "no"}, {"Uri", ct.URI},
			{"QualifyFrequency", "0"}, {"UserAgent", ct.UserAgent}, {"ExpirationTime", fmt.Sprint(ct.Expires.Unix())},
			{"OutboundProxy", ""}, {"Status", "NonQualified"}, {"RoundtripUsec", "N/A"},
		}))
	}
	s.c.mu.Unlock()
	if len(items) == 0 {
		// res_pjsip sends "No Contacts found\n": a bare LF inside the value.
		return s.write(resp(m, "Error", "No Contacts found\n"))
	}
	out := s.listStart(m, "A listing of Contacts follows, presented as ContactList events")
	for _, it := range items {
		out = append(out, it...)
	}
	out = append(out, listComplete("ContactListComplete", id, len(items))...)
	return s.write(out)
}

func (s *amiSession) showEndpoints(m *amiMessage) bool {
	id := m.get("ActionID")
	out := s.listStart(m, "A listing of Endpoints follows, presented as EndpointList events")
	s.c.mu.Lock()
	names := s.c.endpointNames()
	for _, ep := range names {
		contacts := ""
		if ct := s.c.contacts[ep]; ct != nil {
			contacts = ep + "/" + ct.URI + ","
		}
		out = append(out, listItem("EndpointList", id, []kv{
			{"ObjectType", "endpoint"}, {"ObjectName", ep}, {"Transport", ""}, {"Aor", ep}, {"Auths", ep},
			{"OutboundAuths", ""}, {"Contacts", contacts}, {"DeviceState", devStateText(s.c.pjsip[ep])}, {"ActiveChannels", "0"},
		})...)
	}
	s.c.mu.Unlock()
	out = append(out, listComplete("EndpointListComplete", id, len(names))...)
	return s.write(out)
}

func (s *amiSession) showEndpoint(m *amiMessage) bool {
	ep := m.get("Endpoint")
	if ep == "" {
		return s.write(resp(m, "Error", "PJSIPShowEndpoint requires an endpoint name\n"))
	}
	if _, ok := s.c.cfg.Endpoints[ep]; !ok {
		return s.write(resp(m, "Error", "Unable to retrieve endpoint "+ep+"\n"))
	}
	id := m.get("ActionID")
	s.c.mu.Lock()
	st := s.c.pjsip[ep]
	s.c.mu.Unlock()
	out := resp(m, "Success", "", kv{"EventList", "start"}, kv{"Message", "Following are Events for each object associated with the Endpoint"})
	out = append(out, listItem("EndpointDetail", id, []kv{{"ObjectType", "endpoint"}, {"ObjectName", ep},
		{"Context", s.c.cfg.Context}, {"Aors", ep}, {"Auth", ep}, {"DeviceState", devStateText(st)}, {"ActiveChannels", ""}})...)
	out = append(out, listComplete("EndpointDetailComplete", id, 1)...)
	return s.write(out)
}

func (s *amiSession) extensionStateList(m *amiMessage) bool {
	id := m.get("ActionID")
	out := s.listStart(m, "Extension Statuses will follow")
	s.c.mu.Lock()
	names := s.c.endpointNames()
	for _, ext := range names {
		st := s.c.hintStateLocked(ext)
		out = append(out, listItem("ExtensionStatus", id, s.c.extensionStatus(ext, st, "").fields)...)
	}
	s.c.mu.Unlock()
	out = append(out, listComplete("ExtensionStateListComplete", id, len(names))...)
	return s.write(out)
}

func (s *amiSession) deviceStateList(m *amiMessage) bool {
	id := m.get("ActionID")
	out := s.listStart(m, "Device State Changes will follow")
	s.c.mu.Lock()
	devs := s.c.devicesListLocked()
	s.c.mu.Unlock()
	for _, d := range devs {
		out = append(out, listItem("DeviceStateChange", id, []kv{{"Device", d.k}, {"State", d.v}})...)
	}
	out = append(out, listComplete("DeviceStateListComplete", id, len(devs))...)
	return s.write(out)
}

func (s *amiSession) extensionState(m *amiMessage) bool {
	ext := m.get("Exten")
	if ext == "" {
		return s.write(resp(m, "Error", "Extension not specified"))
	}
	ctx := m.get("Context")
	if ctx == "" {
		ctx = "default"
	}
	s.c.mu.Lock()
	_, known := s.c.cfg.Endpoints[ext]
	status, hint := -1, ""
	if known && ctx == s.c.cfg.Context {
		status, hint = s.c.hintStateLocked(ext), s.c.hintText(ext)
	}
	s.c.mu.Unlock()
	return s.write(resp(m, "Success", "Extension Status",
		kv{"Exten", ext}, kv{"Context", ctx}, kv{"Hint", hint}, kv{"Status", itoa(status)}, kv{"StatusText", extStateText(status)}))
}
