package ari

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzHandler throws arbitrary methods, paths, queries and bodies at the
// REST side: no panic, a known status, and valid JSON whenever the reply
// says it is JSON.
func FuzzHandler(f *testing.F) {
	for _, c := range readCallsF(f) {
		f.Add(c.method, c.path, "")
	}
	f.Add("PUT", "/ari/deviceStates/Stasis:1?deviceState=INUSE", "")
	f.Add("PUT", "/ari/deviceStates/Stasis:1", `{"deviceState":"BUSY"}`)
	f.Add("POST", "/ari/applications/a/subscription?eventSource=deviceState:,endpoint:PJSIP", "")
	f.Add("POST", "/ari/applications/a/subscription", `{"eventSource":["x",1]}`)
	f.Add("GET", "/ari/deviceStates/%ZZ%2F%2", "")
	f.Add("GET", "/ari/events?app=a&subscribeAll=1", "")
	f.Add("DELETE", "/ari//x/", "[]")
	fake := newFake()
	h := newHandler(fake, testUsers, nil, 8)
	known := map[int]bool{200: true, 204: true, 400: true, 404: true, 405: true, 409: true,
		413: true, 422: true, 426: true, 500: true, 501: true}
	f.Fuzz(func(t *testing.T, method, target, body string) {
		u, err := url.Parse(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return
		}
		req := &http.Request{Method: method, URL: u, Header: http.Header{}, Body: http.NoBody, Host: "x"}
		if body != "" {
			req.Body = httpBody(body)
			req.Header.Set("Content-Type", "application/json")
		}
		req.SetBasicAuth("aim", "aimsecret")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !known[rec.Code] {
			t.Fatalf("%s %s: status %d", method, target, rec.Code)
		}
		if rec.Header().Get("Content-type") == "application/json" && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: invalid JSON %q", method, target, rec.Body.String())
		}
	})
}

// FuzzURIDecode: decoding never panics and undoes query escaping.
func FuzzURIDecode(f *testing.F) {
	for _, s := range []string{"PJSIP%2F1001", "Stasis:1001", "a+b", "%", "%2", "%zz", "deviceState:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_ = uriDecode(s)
		_ = parseQuery(s)
		want, _, _ := strings.Cut(s, "\x00") // C strings end at NUL
		if got := uriDecode(url.QueryEscape(s)); got != want {
			t.Fatalf("uriDecode(QueryEscape(%q)) = %q", s, got)
		}
	})
}

// readCallsF seeds from the capture when it is there.
func readCallsF(f *testing.F) []call {
	data, err := os.ReadFile(filepath.Join(transcripts, "ari-rest.txt"))
	if err != nil {
		return nil
	}
	calls, err := parseCalls(string(data))
	if err != nil {
		f.Fatal(err)
	}
	return calls
}

type stringBody struct{ *strings.Reader }

func (stringBody) Close() error { return nil }

func httpBody(s string) stringBody { return stringBody{strings.NewReader(s)} }
