package ami

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// loginError is a login the server refused. It carries Asterisk's reason
// ("Authentication failed"), never the secret.
type loginError struct{ reason string }

func (e *loginError) Error() string { return "ami: login refused: " + e.reason }

// login reads the banner and logs in, synchronously and before the reader
// starts, so EventConnected reaches subscribers before any event of the new
// session.
func (c *Client) login(conn net.Conn, p *Parser) (version string, err error) {
	if err := conn.SetDeadline(time.Now().Add(c.cfg.LoginTimeout)); err != nil {
		return "", fmt.Errorf("ami: login: %w", err)
	}
	defer func() {
		if cerr := conn.SetDeadline(time.Time{}); cerr != nil && err == nil {
			err = fmt.Errorf("ami: login: %w", cerr)
		}
	}()
	if version, err = p.ReadBanner(); err != nil {
		return "", err
	}

	login := Message{Fields: []Field{{Key: "Action", Value: "Login"}, {Key: "Username", Value: c.cfg.Username}}}
	if c.cfg.UseMD5 {
		resp, err := c.syncAction(conn, p, Message{Fields: []Field{{Key: "Action", Value: "Challenge"}, {Key: "AuthType", Value: "MD5"}}})
		if err != nil {
			return "", err
		}
		challenge := resp.Get("Challenge")
		if !strings.EqualFold(resp.Get("Response"), "Success") || challenge == "" {
			c.loginFailures.Add(1)
			return "", &loginError{reason: "MD5 challenge refused: " + resp.Get("Message")}
		}
		sum := md5.Sum([]byte(challenge + c.cfg.Secret))
		login.Fields = append(login.Fields, Field{Key: "AuthType", Value: "MD5"}, Field{Key: "Key", Value: hex.EncodeToString(sum[:])})
	} else {
		login.Fields = append(login.Fields, Field{Key: "Secret", Value: c.cfg.Secret})
	}
	login.Fields = append(login.Fields, Field{Key: "Events", Value: c.cfg.Events})

	resp, err := c.syncAction(conn, p, login)
	if err != nil {
		return "", err
	}
	if !strings.EqualFold(resp.Get("Response"), "Success") {
		c.loginFailures.Add(1)
		reason := resp.Get("Message")
		if reason == "" {
			reason = "Response: " + resp.Get("Response")
		}
		return "", &loginError{reason: reason}
	}
	return version, nil
}

// syncAction sends one action and reads until its response, before the
// reader goroutine exists. Events read meanwhile (there should be none
// before login) are dropped.
func (c *Client) syncAction(conn net.Conn, p *Parser, action Message) (Message, error) {
	name := action.Get("Action")
	id := c.newID()
	if _, err := conn.Write(encodeAction(action, id)); err != nil {
		return Message{}, fmt.Errorf("ami: %s: sending: %w", name, err)
	}
	for {
		var m Message
		err := p.Next(&m)
		var se *SyntaxError
		if errors.As(err, &se) {
			c.parseErrors.Add(1)
			continue
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.loginFailures.Add(1)
				return Message{}, fmt.Errorf("ami: %s: no reply within %v: %w", name, c.cfg.LoginTimeout, err)
			}
			return Message{}, fmt.Errorf("ami: %s: reading reply: %w", name, err)
		}
		if _, ok := lookup(&m, "Response"); ok && m.Get("ActionID") == id {
			return m, nil
		}
	}
}
