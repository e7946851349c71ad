package blf

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/asterisksupport/doorman/app/state"
)

// Lamp is one extension's busy lamp across the cluster.
type Lamp struct {
	Extension string            `json:"extension"`
	Stasis    string            `json:"stasis"`    // custom device, e.g. "Stasis:1001"
	Devices   []string          `json:"devices"`   // real devices seen on any server, sorted
	Servers   map[string]string `json:"servers"`   // server -> aggregate of its devices
	Aggregate string            `json:"aggregate"` // over every server, as a hint would show it
	Hint      string            `json:"hint"`      // dialplan line for the hint
}

// Lamps reads every live server's device states and groups them by
// extension, sorted by extension.
func Lamps(ctx context.Context, devs state.Devices, m *Mapping) ([]Lamp, error) {
	all, err := devs.DeviceStates(ctx)
	if err != nil {
		return nil, fmt.Errorf("blf: lamps: %w", err)
	}
	type acc struct {
		lamp    Lamp
		devices map[string]bool
		per     map[string][]string
		all     []string
	}
	by := map[string]*acc{}
	for _, ds := range all {
		name, exten, ok := m.Map(ds.Device)
		if !ok {
			continue
		}
		a := by[name]
		if a == nil {
			a = &acc{lamp: Lamp{Extension: exten, Stasis: name}, devices: map[string]bool{}, per: map[string][]string{}}
			by[name] = a
		}
		a.devices[ds.Device] = true
		a.per[ds.Server] = append(a.per[ds.Server], ds.State)
		a.all = append(a.all, ds.State)
	}
	lamps := make([]Lamp, 0, len(by))
	for _, a := range by {
		l := a.lamp
		for d := range a.devices {
			l.Devices = append(l.Devices, d)
		}
		sort.Strings(l.Devices)
		l.Servers = make(map[string]string, len(a.per))
		for s, sts := range a.per {
			l.Servers[s] = Aggregate(sts...)
		}
		l.Aggregate = Aggregate(a.all...)
		l.Hint = HintLine(l)
		lamps = append(lamps, l)
	}
	sort.Slice(lamps, func(i, j int) bool {
		if lamps[i].Extension != lamps[j].Extension {
			return lamps[i].Extension < lamps[j].Extension
		}
		return lamps[i].Stasis < lamps[j].Stasis
	})
	return lamps, nil
}

// HintLine is the extensions.conf line that shows l's lamp on every
// server: the local devices and the other servers' aggregate.
func HintLine(l Lamp) string {
	return "exten => " + l.Extension + ",hint," + strings.Join(append(slices.Clone(l.Devices), l.Stasis), "&")
}

// WriteHints writes one hint line per lamp (`doorman lamps hints`).
func WriteHints(w io.Writer, lamps []Lamp) error {
	for _, l := range lamps {
		if _, err := fmt.Fprintln(w, HintLine(l)); err != nil {
			return fmt.Errorf("blf: hints: %w", err)
		}
	}
	return nil
}

// WriteLamps writes a table (`doorman lamps`): one row per extension, one
// column per server with that server's state, then the aggregate.
func WriteLamps(w io.Writer, lamps []Lamp) error {
	var servers []string
	seen := map[string]bool{}
	for _, l := range lamps {
		for s := range l.Servers {
			if !seen[s] {
				seen[s] = true
				servers = append(servers, s)
			}
		}
	}
	sort.Strings(servers)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "EXTENSION\tDEVICES")
	for _, s := range servers {
		fmt.Fprint(tw, "\t"+s)
	}
	fmt.Fprintln(tw, "\tAGGREGATE")
	for _, l := range lamps {
		fmt.Fprint(tw, l.Extension+"\t"+strings.Join(l.Devices, ","))
		for _, s := range servers {
			st := l.Servers[s]
			if st == "" {
				st = "-"
			}
			fmt.Fprint(tw, "\t"+st)
		}
		fmt.Fprintln(tw, "\t"+l.Aggregate)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("blf: lamps: %w", err)
	}
	return nil
}
