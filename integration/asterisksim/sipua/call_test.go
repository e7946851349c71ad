package sipua

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// uac is the test's side of a call: a server socket that sends INVITEs to
// the phone and reads what it answers, over UDP or TCP.
type uac struct {
	t     *testing.T
	udp   net.PacketConn
	tcp   net.Conn
	r     *bufio.Reader
	phone net.Addr
}

func newUAC(t *testing.T, transport string, cfg Config) (*uac, *Phone) {
	t.Helper()
	u := &uac{t: t}
	var server string
	var ln net.Listener
	if transport == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u.udp, server = c, c.LocalAddr().String()
		t.Cleanup(func() { c.Close() })
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, server = l, l.Addr().String()
		t.Cleanup(func() { l.Close() })
	}
	cfg.Server, cfg.Transport, cfg.User, cfg.Password = server, transport, "1001", "pw1001"
	cfg.Timeout = 5 * time.Second
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	u.phone = p.LocalAddr()
	if ln != nil {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		u.tcp, u.r = c, bufio.NewReader(c)
		t.Cleanup(func() { c.Close() })
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; p.Close() })
	return u, p
}

func (u *uac) send(msg string) {
	u.t.Helper()
	var err error
	if u.udp != nil {
		_, err = u.udp.WriteTo([]byte(msg), u.phone)
	} else {
		_, err = u.tcp.Write([]byte(msg))
	}
	if err != nil {
		u.t.Fatal(err)
	}
}

// read returns the next message the phone sent.
func (u *uac) read() string {
	u.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	if u.udp != nil {
		_ = u.udp.SetReadDeadline(deadline)
		buf := make([]byte, 65536)
		n, _, err := u.udp.ReadFrom(buf)
		if err != nil {
			u.t.Fatalf("no message from the phone: %v", err)
		}
		return string(buf[:n])
	}
	_ = u.tcp.SetReadDeadline(deadline)
	var head strings.Builder
	for {
		l, err := u.r.ReadString('\n')
		if err != nil {
			u.t.Fatalf("no message from the phone: %v", err)
		}
		head.WriteString(l)
		if l == "\r\n" {
			break
		}
	}
	n, _ := strconv.Atoi(headerOf([]byte(head.String()), "Content-Length"))
	body := make([]byte, n)
	if _, err := io.ReadFull(u.r, body); err != nil {
		u.t.Fatal(err)
	}
	return head.String() + string(body)
}

// expect reads the next message and checks its first line.
func (u *uac) expect(first string) string {
	u.t.Helper()
	m := u.read()
	if l, _, _ := strings.Cut(m, "\r\n"); l != first {
		u.t.Fatalf("got %q, want %q:\n%s", l, first, m)
	}
	return m
}

const offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Asterisk\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
	"m=audio 10000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"

func (u *uac) invite(callID string) string {
	proto := "UDP"
	if u.tcp != nil {
		proto = "TCP"
	}
	return fmt.Sprintf("INVITE sip:1001@%s SIP/2.0\r\nVia: SIP/2.0/%s 127.0.0.1:5060;rport;branch=z9hG4bKPj%s\r\n"+
		"From: <sip:asterisk@127.0.0.1>;tag=srvtag\r\nTo: <sip:1001@%s>\r\nContact: <sip:asterisk@127.0.0.1:5060>\r\n"+
		"Call-ID: %s\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		u.phone, proto, callID, u.phone, callID, len(offer), offer)
}

// inDialog is a request of the server inside the dialog the phone tagged.
func (u *uac) inDialog(method, callID, toTag string, cseq int) string {
	proto := "UDP"
	if u.tcp != nil {
		proto = "TCP"
	}
	return fmt.Sprintf("%s sip:1001@%s SIP/2.0\r\nVia: SIP/2.0/%s 127.0.0.1:5060;rport;branch=z9hG4bKPj%s%d\r\n"+
		"From: <sip:asterisk@127.0.0.1>;tag=srvtag\r\nTo: <sip:1001@%s>;tag=%s\r\nCall-ID: %s\r\nCSeq: %d %s\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", method, u.phone, proto, method, cseq, u.phone, toTag, callID, cseq, method)
}

func toTag(t *testing.T, msg string) string {
	t.Helper()
	tag := tagOf(headerOf([]byte(msg), "To"))
	if tag == "" {
		t.Fatalf("no To tag in\n%s", msg)
	}
	return tag
}

// TestCallRingAnswerBye: an INVITE rings (100, 180 with a To tag and a
// Contact), Answer sends 200 OK with an SDP answer in the offer's first
// codec, resent until the ACK; the server's BYE gets 200 and ends the call.
func TestCallRingAnswerBye(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			u, p := newUAC(t, transport, Config{})
			u.send(u.invite("call-1"))
			trying := u.expect("SIP/2.0 100 Trying")
			if tagOf(headerOf([]byte(trying), "To")) != "" || !strings.Contains(trying, "branch=z9hG4bKPjcall-1") {
				t.Errorf("100 Trying: To tag or Via wrong:\n%s", trying)
			}
			ringing := u.expect("SIP/2.0 180 Ringing")
			tag := toTag(t, ringing)
			if headerOf([]byte(ringing), "Contact") != "<"+p.ContactURI()+">" || headerOf([]byte(ringing), "CSeq") != "7 INVITE" {
				t.Errorf("180 Ringing: Contact or CSeq wrong:\n%s", ringing)
			}
			var call *Call
			select {
			case call = <-p.Incoming():
			case <-time.After(5 * time.Second):
				t.Fatal("no incoming call")
			}
			if call.State() != CallRinging || call.CallID() != "call-1" {
				t.Fatalf("call %s is %s", call.CallID(), call.State())
			}
			// A retransmitted INVITE gets the provisional again, not a second call.
			u.send(u.invite("call-1"))
			u.expect("SIP/2.0 180 Ringing")

			if err := call.Answer(); err != nil {
				t.Fatal(err)
			}
			ok := u.expect("SIP/2.0 200 OK")
			if toTag(t, ok) != tag || !strings.Contains(ok, "Content-Type: application/sdp") ||
				!strings.Contains(ok, "m=audio ") || !strings.Contains(ok, " RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n") {
				t.Errorf("200 OK:\n%s", ok)
			}
			if transport == "udp" {
				u.expect("SIP/2.0 200 OK") // no ACK yet: resent
			}
			u.send(u.inDialog("ACK", "call-1", tag, 7))
			if call.State() != CallUp {
				t.Fatalf("after ACK: %s", call.State())
			}
			u.send(u.inDialog("BYE", "call-1", tag, 8))
			bye := u.expect("SIP/2.0 200 OK")
			if headerOf([]byte(bye), "CSeq") != "8 BYE" {
				t.Errorf("BYE's 200:\n%s", bye)
			}
			select {
			case <-call.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("BYE did not end the call")
			}
			u.send(u.inDialog("BYE", "nosuchcall", "x", 9))
			u.expect("SIP/2.0 481 Call/Transaction Does Not Exist")
		})
	}
}

// TestCallHangupAnswersChallenge: a call answered at once (NoRinging) and
// hung up by the phone: BYE inside the dialog, one 401 answered with a
// digest over BYE and the remote target.
func TestCallHangupAnswersChallenge(t *testing.T) {
	u, p := newUAC(t, "udp", Config{Answering: Answering{NoRinging: true}})
	u.send(u.invite("call-2"))
	u.expect("SIP/2.0 100 Trying")
	tag := toTag(t, u.expect("SIP/2.0 200 OK"))
	u.send(u.inDialog("ACK", "call-2", tag, 7))
	call := <-p.Incoming()
	errc := make(chan error, 1)
	go func() { errc <- call.Hangup(context.Background()) }()
	bye := u.expect("BYE sip:asterisk@127.0.0.1:5060 SIP/2.0")
	if tagOf(headerOf([]byte(bye), "From")) != tag || headerOf([]byte(bye), "To") != "<sip:asterisk@127.0.0.1>;tag=srvtag" ||
		headerOf([]byte(bye), "CSeq") != "2 BYE" || headerOf([]byte(bye), "Call-ID") != "call-2" {
		t.Fatalf("BYE:\n%s", bye)
	}
	reply := func(req string, code int, reason, extra string) {
		var b strings.Builder
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", code, reason)
		for _, h := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
			fmt.Fprintf(&b, "%s: %s\r\n", h, headerOf([]byte(req), h))
		}
		b.WriteString(extra + "Content-Length: 0\r\n\r\n")
		u.send(b.String())
	}
	reply(bye, 401, "Unauthorized", "WWW-Authenticate: Digest realm=\"asterisk\",nonce=\"n1\",algorithm=MD5,qop=\"auth\"\r\n")
	bye2 := u.expect("BYE sip:asterisk@127.0.0.1:5060 SIP/2.0")
	for bye2 == bye { // a resend of the first BYE may come before the answer to the challenge
		bye2 = u.expect("BYE sip:asterisk@127.0.0.1:5060 SIP/2.0")
	}
	f := parseChallenge(strings.ReplaceAll(headerOf([]byte(bye2), "Authorization"), ", ", ","))
	ha1 := md5hex("1001:asterisk:pw1001")
	want := md5hex(ha1 + ":n1:" + f["nc"] + ":" + f["cnonce"] + ":auth:" + md5hex("BYE:sip:asterisk@127.0.0.1:5060"))
	if f["response"] != want || headerOf([]byte(bye2), "CSeq") != "3 BYE" {
		t.Fatalf("BYE with credentials: fields %v, want response %s:\n%s", f, want, bye2)
	}
	reply(bye2, 200, "OK", "")
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if call.State() != CallEnded {
		t.Errorf("after Hangup: %s", call.State())
	}
}

// TestCallCancelAndReject: CANCEL of a ringing call gets 200 and the
// INVITE 487; Reject answers 486 after 100 Trying; Hangup of a ringing call
// declines it with 603.
func TestCallCancelAndReject(t *testing.T) {
	u, p := newUAC(t, "udp", Config{})
	u.send(u.invite("call-3"))
	u.expect("SIP/2.0 100 Trying")
	u.expect("SIP/2.0 180 Ringing")
	call := <-p.Incoming()
	cancel := strings.Replace(u.invite("call-3"), "INVITE sip:", "CANCEL sip:", 1)
	cancel = strings.Replace(cancel, "CSeq: 7 INVITE", "CSeq: 7 CANCEL", 1)
	u.send(cancel)
	if m := u.expect("SIP/2.0 200 OK"); headerOf([]byte(m), "CSeq") != "7 CANCEL" {
		t.Errorf("CANCEL's 200:\n%s", m)
	}
	if m := u.expect("SIP/2.0 487 Request Terminated"); headerOf([]byte(m), "CSeq") != "7 INVITE" {
		t.Errorf("INVITE's 487:\n%s", m)
	}
	<-call.Done()

	p.SetAnswering(Answering{Reject: 486})
	u.send(u.invite("call-4"))
	u.expect("SIP/2.0 100 Trying")
	u.expect("SIP/2.0 486 Busy Here")

	p.SetAnswering(Answering{})
	u.send(u.invite("call-5"))
	u.expect("SIP/2.0 100 Trying")
	u.expect("SIP/2.0 180 Ringing")
	var c5 *Call
	for c5 == nil || c5.CallID() != "call-5" {
		c5 = <-p.Incoming()
	}
	if err := c5.Hangup(context.Background()); err != nil {
		t.Fatal(err)
	}
	u.expect("SIP/2.0 603 Decline")
	if n := len(p.Calls()); n != 0 {
		t.Errorf("%d calls still open", n)
	}
}

func TestAnswerAfter(t *testing.T) {
	u, p := newUAC(t, "udp", Config{Answering: Answering{AnswerAfter: 10 * time.Millisecond}})
	u.send(u.invite("call-6"))
	u.expect("SIP/2.0 100 Trying")
	u.expect("SIP/2.0 180 Ringing")
	u.expect("SIP/2.0 200 OK")
	if st := (<-p.Incoming()).State(); st != CallUp {
		t.Errorf("state %s", st)
	}
}
