// Package asterisksim is a protocol-faithful Asterisk 22 simulator for the
// doorman end-to-end tests: it puts on the wire the same bytes as the real
// Asterisk captured in ../shared/asterisk-transcripts for the same actions.
//
// It owns:
//   - an AMI server (TCP): banner, plaintext and MD5 (Challenge) login with
//     Asterisk's 1 s delay on failure, Events, Ping, CoreSettings, CoreStatus,
//     UserEvent, PJSIPShowContacts, PJSIPShowEndpoints, ExtensionStateList,
//     DeviceStateList, ExtensionState, Originate of Local/agi@doorman-e2e and
//     of PJSIP/<endpoint>, Hangup, Command "core restart now" (see below),
//     and Asterisk's error replies; the event
//     stream (security events, PeerStatus, ContactStatus, DeviceStateChange,
//     ExtensionStatus, FullyBooted) filtered by the session's event mask,
//     the user's read classes and its manager.conf event filters (the
//     structured eventfilter(action(...),name(...)) form only);
//   - a PJSIP-like registrar on UDP and TCP (same host:port) with MD5 digest
//     (qop=auth, 32 s nonces bound to the source), max_contacts=1, expiry,
//     optional qualify (OPTIONS), and the security events of res_pjsip
//     (InvalidAccountID, ChallengeSent, ChallengeResponseFailed,
//     SuccessfulAuth) with the real packet source as RemoteAddress;
//   - the `security` log file in res_security_log.c's format and the NOTICE
//     lines of the `messages` log (fail2ban's stock asterisk filter reads both);
//   - device states, hints "PJSIP/<ext>&Stasis:<ext>" aggregated with
//     Asterisk's rank, and Stasis: custom states persisted in StateDir (like
//     astdb) and replayed after Restart;
//   - the core behind the ARI server of package ari, served on HTTPAddr, and
//     FastAGI sessions through package agi (Sim.StartAGI).
//
// Package sipua is the test phone and attacker; the program
// integration/cmd/asterisk-sim runs servers (and phones) as processes.
//
// # Control API
//
// With Config.ControlAddr set, an HTTP server offers (JSON bodies):
//
//	POST /control/devicestate  {"device":"PJSIP/1001","state":"RINGING"}  -> 204
//	GET  /control/devicestate?device=PJSIP/1001                         -> {"device":..,"state":..}
//	POST /control/devicetrace  (with Config.TraceDevices)               -> [{"device":..,"state":..,"at":unix-ns}...]
//	                           takes every state stored since the last call: they are forgotten
//	POST /control/restart                                               -> 204 (like Sim.Restart)
//	GET  /control/contacts                                              -> [Contact...]
//	GET  /control/info                                                  -> bound addresses
//	POST /control/agi  {"addr":"127.0.0.1:4573","script":"dialLocal","args":["1001","25","TtWw","1001"]}
//	                                                                    -> AGIResult (501 without a FastAGI client)
//
// Errors come back as {"message": "..."} with a 4xx/5xx status.
//
// # Real-server equivalents on AMI (inferred, not captured)
//
// The end-to-end suite drives a real Asterisk through AMI where the control
// API is not available, and runs that same path against simulators to prove
// it. No transcript holds these exchanges, so they follow Asterisk's
// documentation and source rather than recorded bytes:
//
//   - Originate with Channel Local/agi@doorman-e2e (the only dialplan the
//     simulator knows: asterisk-conf/test-extensions.conf's [doorman-e2e],
//     hard-wired in originate.go) answers "Originate successfully queued",
//     raises OriginateResponse, runs AGI(${BASE64_DECODE(${E2E_AGI})}) on the
//     ;2 channel with the Originate's Variable headers as channel variables,
//     raises AGIExecStart/AGIExecEnd per command and then the UserEvent
//     DoormanE2E with ID, AGISTATUS, dialStatus and base64 dialString. A
//     restart or Close hangs the channel up and waits for it. Any other
//     channel gets "Originate failed", as before.
//   - Command "core restart now" answers Success and restarts the simulator
//     (like POST /control/restart); other CLI commands get "No such command".
//   - Originate with Channel PJSIP/<endpoint> (calls.go) sends an INVITE with
//     an SDP offer to the endpoint's registered contact, over the transport
//     and connection it registered on. The device state follows the call
//     through the same path as POST /control/devicestate (DeviceStateChange,
//     ExtensionStatus, ARI DeviceStateChanged): RINGING on 180/183, INUSE on
//     200 (ACKed), NOT_INUSE when it ends: the phone's BYE (200; a BYE for an
//     unknown dialog gets 481, before any authentication), AMI Hangup of the
//     channel (BYE, or CANCEL while ringing: "Channel Hungup"; "No such
//     channel" otherwise), the end of Application Wait (Data seconds). Async
//     answers "Originate successfully queued" at once; without Async the
//     action waits and answers that, or "Originate failed". OriginateResponse
//     carries Channel PJSIP/<endpoint>-<8 hex digits> and Reason 4 on answer;
//     on failure Response: Failure with pbx_dial_reason's Reason: 0 without a
//     contact (Channel PJSIP/<endpoint>, Uniqueid <null>), 5 for 486/600, 8
//     for 603 and 5xx, 3 when Timeout (ms, default 30000) ran out (CANCEL
//     sent), 1 when hung up while ringing. Not simulated: retransmissions of
//     the simulator's own requests, channel events (Newchannel, Hangup ...),
//     media, session refreshes, dialplan applications other than Wait (the
//     call then stays up until hung up) and Context/Exten originates.
package asterisksim
