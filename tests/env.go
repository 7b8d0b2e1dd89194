package tests

import (
	"os"
	"strings"
)

// IsolatedEnv is the environment for a caddy process of a test or of the
// load benchmark: away from the user's Caddy data and config and from any
// CONNGATE_ variables of the shell, with extra added.
func IsolatedEnv(dir string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONNGATE_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			env = append(env, kv)
		}
	}
	return append(env, append([]string{"HOME=" + dir, "XDG_DATA_HOME=" + dir + "/xdg-data", "XDG_CONFIG_HOME=" + dir + "/xdg-config"}, extra...)...)
}
