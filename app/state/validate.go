package state

import (
	"errors"
	"fmt"
	"strings"
)

// CheckName rejects a server, AOR or similar name that a store cannot key
// on: empty, or holding a NUL byte (stores use NUL as a separator).
// what names the field in the error.
func CheckName(what, v string) error {
	if v == "" {
		return fmt.Errorf("empty %s", what)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%s %q contains a NUL byte", what, v)
	}
	return nil
}

// Validate reports why b cannot be stored.
func (b Ban) Validate() error {
	if !b.Prefix.IsValid() {
		return errors.New("ban: invalid prefix")
	}
	if !b.Permanent && b.Expires.IsZero() {
		return fmt.Errorf("ban %v: temporary ban without expiry", b.Prefix)
	}
	return nil
}

// Validate reports why r cannot be stored.
func (r Registration) Validate() error {
	if err := CheckName("server", r.Server); err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	if err := CheckName("aor", r.AOR); err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	if r.Contact == "" {
		return fmt.Errorf("registration of %s: empty contact", r.AOR)
	}
	if r.Expires.IsZero() {
		return fmt.Errorf("registration of %s, contact %s: no expiry", r.AOR, r.Contact)
	}
	return nil
}

// Validate reports why d cannot be stored. A state is a word of letters,
// digits and underscores, like Asterisk's (NOT_INUSE, RINGING, ...).
func (d DeviceState) Validate() error {
	if err := CheckName("server", d.Server); err != nil {
		return fmt.Errorf("device state: %w", err)
	}
	if err := CheckName("device", d.Device); err != nil {
		return fmt.Errorf("device state: %w", err)
	}
	if d.State == "" {
		return fmt.Errorf("device state of %s: empty state", d.Device)
	}
	for _, c := range d.State {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("device state of %s: state %q is not a word", d.Device, d.State)
		}
	}
	return nil
}
