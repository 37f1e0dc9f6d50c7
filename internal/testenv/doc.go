// Package testenv provides helpers for tests that need real external
// services: the module root, free loopback addresses and a throw-away
// InfluxDB 1.8 server (the influxd binary installed by `make tools` into
// .tools/bin).
//
// It is meant to be imported only from _test.go files.
package testenv
