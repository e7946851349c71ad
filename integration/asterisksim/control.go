package asterisksim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// AGIRequest asks the simulated dialplan to run AGI(). Either AppData holds
// the application's argument string as in extensions.conf
// ("agi://127.0.0.1:4573/dialLocal,1001,25,TtWw,1001", or the seed's
// "agi://127.0.0.1:4573,dialLocal,1001"), or Addr/Script/Args build it.
type AGIRequest struct {
	AppData  string   `json:"app_data,omitempty"`
	Addr     string   `json:"addr,omitempty"`      // FastAGI server host[:port]
	Script   string   `json:"script,omitempty"`    // agi_network_script; "" sends none
	Args     []string `json:"args,omitempty"`      // agi_arg_1..N
	Exten    string   `json:"exten,omitempty"`     // agi_extension of the calling channel, default "s"
	CallerID string   `json:"caller_id,omitempty"` // agi_callerid
	Timeout  string   `json:"timeout,omitempty"`   // Go duration for the control API, default 10s
}

// AGIVar is one variable the AGI server set.
type AGIVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// AGIResult is what the dialplan sees after AGI() returned.
type AGIResult struct {
	Status    string            `json:"status"`    // AGISTATUS: SUCCESS, FAILURE, HANGUP
	Variables map[string]string `json:"variables"` // channel variables afterwards (AGISTATUS included)
	Set       []AGIVar          `json:"set"`       // SET VARIABLE calls, in order
	Commands  []string          `json:"commands"`  // every command line the server sent
	HungUp    bool              `json:"hung_up"`
}

// errNoAGI is returned while no FastAGI client is wired in.
var errNoAGI = errors.New("asterisksim: FastAGI client not available")

// initHTTP wires the ARI server and the FastAGI client.
func (s *Sim) initHTTP() {
	s.initARI()
	s.initAGI()
}

// StartAGI runs one FastAGI session as the dialplan AGI() application would.
func (s *Sim) StartAGI(ctx context.Context, req AGIRequest) (AGIResult, error) {
	if s.agiDial == nil {
		return AGIResult{}, errNoAGI
	}
	return s.agiDial(ctx, req)
}

// controlHandler serves the control API documented in the package doc.
func (s *Sim) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /control/devicestate", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Device, State string }
		if err := decode(r, &body); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.SetDeviceState(body.Device, body.State); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /control/devicestate", func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("device")
		writeJSON(w, map[string]string{"device": d, "state": s.DeviceState(d)})
	})
	mux.HandleFunc("POST /control/devicetrace", func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.TraceDevices {
			httpError(w, http.StatusNotFound, errors.New("asterisksim: device trace off (Config.TraceDevices, -trace-devices)"))
			return
		}
		t := s.core.takeTrace()
		if t == nil {
			t = []DeviceChange{}
		}
		writeJSON(w, t)
	})
	mux.HandleFunc("POST /control/restart", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Restart(context.WithoutCancel(r.Context())); err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /control/contacts", func(w http.ResponseWriter, r *http.Request) {
		cs := s.Contacts()
		if cs == nil {
			cs = []Contact{}
		}
		writeJSON(w, cs)
	})
	mux.HandleFunc("GET /control/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"system_name": s.cfg.SystemName, "entity_id": s.cfg.EntityID,
			"ami": s.AMIAddr(), "sip": s.SIPAddr(), "http": s.HTTPAddr(), "control": s.ControlAddr()})
	})
	mux.HandleFunc("POST /control/agi", func(w http.ResponseWriter, r *http.Request) {
		var req AGIRequest
		if err := decode(r, &req); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		timeout := 10 * time.Second
		if req.Timeout != "" {
			d, err := time.ParseDuration(req.Timeout)
			if err != nil {
				httpError(w, http.StatusBadRequest, err)
				return
			}
			timeout = d
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		res, err := s.StartAGI(ctx, req)
		if errors.Is(err, errNoAGI) {
			httpError(w, http.StatusNotImplemented, err)
			return
		}
		if err != nil {
			httpError(w, http.StatusBadGateway, err)
			return
		}
		writeJSON(w, res)
	})
	return mux
}

func decode(r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<16)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
}
