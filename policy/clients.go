package policy

import (
	"fmt"
	"net/netip"
)

// ClientRule allows or denies sessions from some client networks on some
// listeners. Config.Clients is checked in order and the first rule whose
// Listeners and Networks both match decides; a session no rule matches is
// allowed. A typical list allows the networks that may use a listener and
// ends with a deny for everyone else:
//
//	clients:
//	  - {name: office, listeners: [public], networks: [198.18.0.0/16], action: allow}
//	  - {name: others, listeners: [public], action: deny}
type ClientRule struct {
	// Name names the rule in audit records; default "#N", its position.
	Name string `yaml:"name"`
	// Listeners are listener names or addresses, as in CommandRule; empty
	// means every listener.
	Listeners []string `yaml:"listeners"`
	// Networks are networks of the client address; empty means every client.
	Networks []netip.Prefix `yaml:"networks"`
	// Action is "allow" or "deny".
	Action string `yaml:"action"`
}

func (r ClientRule) validate() error {
	if err := validateAction(r.Action); err != nil {
		return err
	}
	return validateScope(r.Networks, nil, r.Listeners)
}

// Session decides whether a client may start a session on the listener it
// reached. It looks at f.Client, f.Listener and f.ListenerAddr only, so it
// can run before anything else: a denied client gets 421 and no upstream
// connection is ever made for it.
func (c Config) Session(f SessionFacts) Decision {
	for i, r := range c.Clients {
		if !inScope(f, r.Networks, nil, r.Listeners) {
			continue
		}
		rule := "client rule " + ruleLabel(r.Name, i)
		if r.Action == ActionAllow {
			return Decision{Allow: true, Rule: rule}
		}
		return refuse(rule, 421, "Service not available for your address, closing control connection.",
			fmt.Sprintf("client %s denied on listener %s by %s", f.Client.Addr().Unmap(), listenerLabel(f), rule))
	}
	return allow()
}

func listenerLabel(f SessionFacts) string {
	if f.Listener != "" {
		return fmt.Sprintf("%q", f.Listener)
	}
	return f.ListenerAddr.String()
}
