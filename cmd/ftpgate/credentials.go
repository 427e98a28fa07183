package main

import (
	"fmt"
	"os"
	"strings"
)

// credentialsVar is the variable systemd sets to the directory of a unit's
// LoadCredential= files; a 0600 root key is readable there by a DynamicUser.
const credentialsVar = "CREDENTIALS_DIRECTORY"

// withCredentials returns fc with ${CREDENTIALS_DIRECTORY} (or
// $CREDENTIALS_DIRECTORY) in the certificate, key and CA paths replaced by
// the variable's value. No other variable is expanded: a path is a path.
func (fc fileConfig) withCredentials() (fileConfig, error) {
	for _, p := range []struct {
		what string
		path *string
	}{
		{"tls cert", &fc.TLS.Cert},
		{"tls key", &fc.TLS.Key},
		{"server_tls ca", &fc.ServerTLS.CA},
	} {
		v, err := expandCredentials(*p.path)
		if err != nil {
			return fc, fmt.Errorf("%s %q: %w", p.what, *p.path, err)
		}
		*p.path = v
	}
	return fc, nil
}

// expandCredentials replaces the credentials directory variable in path.
func expandCredentials(path string) (string, error) {
	if !strings.Contains(path, "$") {
		return path, nil
	}
	dir, set := os.LookupEnv(credentialsVar)
	var bad string
	out := os.Expand(path, func(name string) string {
		if name != credentialsVar {
			bad = name
			return ""
		}
		return dir
	})
	switch {
	case bad != "":
		return "", fmt.Errorf("only $%s is expanded in paths, not $%s", credentialsVar, bad)
	case !set || dir == "":
		return "", fmt.Errorf("$%s is not set (systemd sets it for units with LoadCredential=)", credentialsVar)
	}
	return out, nil
}
