package harness

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// TestBedIsReal proves the bed separates hosts for real: a datagram from the
// attacker's namespace reaches a listener in the server's namespace until an
// nftables drop rule for the attacker's address is added on the server.
func TestBedIsReal(t *testing.T) {
	bed := New(t)
	server := bed.AddHost("server")
	attacker := bed.AddHost("attacker")

	var ln net.PacketConn
	if err := server.Do(func() (err error) {
		ln, err = net.ListenPacket("udp", server.IPv4.String()+":5060")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conn net.Conn
	if err := attacker.Do(func() (err error) {
		conn, err = net.Dial("udp", server.IPv4.String()+":5060")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	received := func() (string, error) {
		_ = ln.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 2048)
		n, from, err := ln.ReadFrom(buf)
		if err != nil {
			return "", err
		}
		if got := from.(*net.UDPAddr).IP.String(); got != attacker.IPv4.String() {
			return "", errors.New("datagram from " + got)
		}
		return string(buf[:n]), nil
	}
	register := "REGISTER sip:" + server.IPv4.String() + " SIP/2.0\r\n\r\n"

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Eventually(ctx, func() error {
		if _, err := conn.Write([]byte(register)); err != nil {
			return err
		}
		got, err := received()
		if err == nil && !strings.HasPrefix(got, "REGISTER") {
			return errors.New("unexpected payload")
		}
		return err
	}); err != nil {
		t.Fatalf("before the drop rule, nothing arrived: %v", err)
	}

	server.MustRun("nft", "add table inet bedtest")
	server.MustRun("nft", "add chain inet bedtest pre { type filter hook prerouting priority raw; }")
	server.MustRun("nft", "add rule inet bedtest pre ip saddr "+attacker.IPv4.String()+" drop")
	for i := 0; i < 5; i++ {
		if _, err := conn.Write([]byte(register)); err != nil {
			t.Fatal(err)
		}
		if got, err := received(); err == nil {
			t.Fatalf("after the drop rule a datagram still arrived: %q", got)
		}
	}
}
