// Package influxconf writes the configuration of a throw-away InfluxDB 1.8
// server on loopback, for the tests and the benchmark harness: no usage
// reporting, no monitor database, no query or HTTP request logs, warnings
// only.
package influxconf

import "fmt"

// Config is where the server listens and keeps its data.
type Config struct {
	RPCAddr, HTTPAddr        string // the backup RPC and HTTP API addresses
	MetaDir, DataDir, WALDir string
	Flux                     bool // serve Flux queries
	Pprof                    bool // serve Go's profiles under /debug/pprof/
}

// String returns the configuration file.
func (c Config) String() string {
	return fmt.Sprintf(`reporting-disabled = true
bind-address = %q

[meta]
  dir = %q
  logging-enabled = false

[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false

[http]
  enabled = true
  bind-address = %q
  auth-enabled = false
  log-enabled = false
  flux-enabled = %t
  pprof-enabled = %t

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
`, c.RPCAddr, c.MetaDir, c.DataDir, c.WALDir, c.HTTPAddr, c.Flux, c.Pprof)
}
