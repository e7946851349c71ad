package asterisksim

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/asterisksupport/doorman/integration/asterisksim/agi"
)

var agiCalls atomic.Int64

// initAGI wires package agi as the FastAGI client of StartAGI.
func (s *Sim) initAGI() {
	s.agiDial = func(ctx context.Context, req AGIRequest) (AGIResult, error) {
		appData := req.AppData
		if appData == "" {
			if req.Addr == "" {
				return AGIResult{}, fmt.Errorf("asterisksim: AGI request needs app_data or addr")
			}
			appData = "agi://" + req.Addr
			if req.Script != "" {
				appData += "/" + req.Script
			}
			for _, a := range req.Args {
				appData += "," + a
			}
		}
		exten := req.Exten
		if exten == "" {
			exten = "s"
		}
		n := agiCalls.Add(1)
		ch := agi.Channel{
			Name:      fmt.Sprintf("Local/%s@%s-%08x;2", exten, s.cfg.Context, n),
			UniqueID:  fmt.Sprintf("%s-%d.%d", s.cfg.SystemName, s.core.now().Unix(), n),
			Version:   s.cfg.Version,
			CallerID:  req.CallerID,
			Context:   s.cfg.Context,
			Extension: exten,
		}
		res, err := agi.DialApp(ctx, appData, ch, agi.WithDialStatus(s.dialStatus),
			agi.WithLogger(s.log.With("component", "agi")))
		if res == nil {
			return AGIResult{}, err
		}
		out := AGIResult{Status: res.Status, Variables: res.Vars, Commands: res.Commands, HungUp: res.HungUp}
		for _, v := range res.Set {
			out.Set = append(out.Set, AGIVar{Name: v.Name, Value: v.Value})
		}
		return out, err
	}
	s.core.runAGI = func(ctx context.Context, appData string, ch agi.Channel, opts ...agi.Option) (*agi.Result, error) {
		ch.Version = s.cfg.Version
		opts = append([]agi.Option{agi.WithDialStatus(s.dialStatus), agi.WithLogger(s.log.With("component", "agi"))}, opts...)
		return agi.DialApp(ctx, appData, ch, opts...)
	}
}

// dialStatus decides DIALSTATUS for EXEC Dial: a local PJSIP/<ext> answers
// when registered; a PJSIP/<endpoint>/<uri> toward another server answers;
// anything else is CHANUNAVAIL, as with nothing registered.
func (s *Sim) dialStatus(dialString string) string {
	targets, _, _ := strings.Cut(dialString, ",")
	for _, t := range strings.Split(targets, "&") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(t), "PJSIP/")
		if !ok {
			continue
		}
		if strings.Contains(rest, "/") {
			return "ANSWER"
		}
		s.core.mu.Lock()
		registered := s.core.contacts[rest] != nil
		s.core.mu.Unlock()
		if registered {
			return "ANSWER"
		}
	}
	return "CHANUNAVAIL"
}
