package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/internal/config"
)

// brokerArgsEnv, when set, makes the test binary run the broker with these
// newline-separated arguments instead of the tests: the benchmarks measure a
// broker in a process of its own.
const brokerArgsEnv = "BROKER_BENCH_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(brokerArgsEnv); ok {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr)
		stop()
		os.Exit(config.ExitCode(err, os.Stderr))
	}
	os.Exit(m.Run())
}

// brokerProcess is a broker running in a child process.
type brokerProcess struct {
	addr string
	cmd  *exec.Cmd
}

// startBrokerProcess runs the broker in a child process on a free loopback
// port, with args added to the listener, data and rate-limit flags, and
// returns once it accepts connections.
func startBrokerProcess(b *testing.B, args ...string) *brokerProcess {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	all := append([]string{"--mqtt", addr, "--mqtt-ws", "", "--data", b.TempDir(), "--mqtt-conn-rate", "-1", "--log-level", "warn"}, args...)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), brokerArgsEnv+"="+strings.Join(all, "\n"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &brokerProcess{addr: addr, cmd: cmd}
	b.Cleanup(p.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			b.Fatal("the broker process does not accept connections")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *brokerProcess) stop() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		_ = p.cmd.Wait()
	}
}

// rssKiB is the process's resident set size.
func (p *brokerProcess) rssKiB(b *testing.B) float64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// connectPacket is an MQTT 3.1.1 CONNECT with a user name and password,
// keepalive 0 (the broker applies its maximum).
func connectPacket(clientID, user, pass string) []byte {
	var v []byte
	str := func(s string) { v = binary.BigEndian.AppendUint16(v, uint16(len(s))); v = append(v, s...) }
	str("MQTT")
	v = append(v, 4, 0xC2, 0, 0) // level 4; user name, password, clean session; keepalive 0
	str(clientID)
	str(user)
	str(pass)
	pk := []byte{0x10}
	for n := len(v); ; {
		c := byte(n % 128)
		if n /= 128; n > 0 {
			c |= 0x80
		}
		pk = append(pk, c)
		if n == 0 {
			break
		}
	}
	return append(pk, v...)
}

// BenchmarkConnect10k opens 10,000 MQTT connections, each a device with its
// own token, to a broker in its own process, 64 at a time, and keeps them
// open: the time to connect them all, and the broker's resident memory per
// connection.
func BenchmarkConnect10k(b *testing.B) {
	const conns, dialers = 10000, 64
	iss := brokertest.NewIssuer(b)
	tokens := make([]string, conns)
	for i := range tokens {
		tokens[i] = iss.Sign(b, iss.Claims(fmt.Sprintf("dev-%05d", i), broker.ScopeDevice))
	}
	for range b.N {
		p := startBrokerProcess(b, "--issuer", iss.URL)
		time.Sleep(200 * time.Millisecond) // keys fetched
		before := p.rssKiB(b)
		open := make([]net.Conn, conns)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range dialers {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < conns; i = int(next.Add(1) - 1) {
					id := fmt.Sprintf("dev-%05d", i)
					c, err := net.Dial("tcp", p.addr)
					if err != nil {
						b.Error(err)
						return
					}
					open[i] = c
					if _, err := c.Write(connectPacket(id, id, tokens[i])); err != nil {
						b.Error(err)
						return
					}
					ack := make([]byte, 4)
					if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
						b.Errorf("%s: CONNACK % x, %v", id, ack, err)
						return
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		time.Sleep(time.Second) // settle
		after := p.rssKiB(b)
		b.ReportMetric(elapsed.Seconds(), "s/10k-conns")
		b.ReportMetric(conns/elapsed.Seconds(), "conns/s")
		b.ReportMetric((after-before)/conns, "KiB-RSS/conn")
		b.ReportMetric(after/1024, "MiB-RSS")
		for _, c := range open {
			if c != nil {
				c.Close()
			}
		}
		p.stop()
	}
}

// BenchmarkQoS1Publish measures QoS 1 publishes per second with 10
// synchronous paho publishers (each waits for its PUBACK) and the ingest
// bridge's subscription ($share/cloud/devices/+/positions at QoS 1, a
// persistent session that acknowledges each message), first against a
// broker with token authentication, the ACL and payload validation, then
// against the same broker allowing all, and reports both and their ratio.
func BenchmarkQoS1Publish(b *testing.B) {
	const publishers, each = 10, 3000
	iss := brokertest.NewIssuer(b)
	measure := func(args []string, auth bool) float64 {
		p := startBrokerProcess(b, args...)
		time.Sleep(200 * time.Millisecond)
		var delivered atomic.Int64
		so := paho.NewClientOptions().AddBroker("tcp://" + p.addr).SetClientID("svc:cloud/ingest").SetCleanSession(false).
			SetDefaultPublishHandler(func(paho.Client, paho.Message) { delivered.Add(1) })
		if auth {
			so.SetUsername("svc:cloud").SetPassword(iss.Sign(b, iss.Claims("svc:cloud", broker.ScopeIngest)))
		}
		sub := paho.NewClient(so)
		if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("connect the subscriber: %v", tok.Error())
		}
		defer sub.Disconnect(100)
		if tok := sub.Subscribe("$share/cloud/devices/+/positions", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatalf("subscribe: %v", tok.Error())
		}
		clients := make([]paho.Client, publishers)
		for i := range clients {
			id := fmt.Sprintf("van-%d", i)
			o := paho.NewClientOptions().AddBroker("tcp://" + p.addr).SetClientID(id)
			if auth {
				o.SetUsername(id).SetPassword(iss.Sign(b, iss.Claims(id, broker.ScopeDevice)))
			}
			clients[i] = paho.NewClient(o)
			if tok := clients[i].Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				b.Fatalf("connect: %v", tok.Error())
			}
			defer clients[i].Disconnect(100)
		}
		base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
		payloads := make([]string, each)
		for i := range payloads {
			payloads[i] = fmt.Sprintf(`{"time":%q,"lat":52.37,"lon":4.89,"speed":1.5,"course":90,"sats":9,"fix":"3d"}`,
				base.Add(time.Duration(i)*100*time.Millisecond).Format(time.RFC3339Nano))
		}
		var wg sync.WaitGroup
		start := time.Now()
		for i, c := range clients {
			topic := fmt.Sprintf("devices/van-%d/positions", i)
			wg.Go(func() {
				for _, pl := range payloads {
					if tok := c.Publish(topic, 1, false, pl); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
						b.Errorf("publish: %v", tok.Error())
						return
					}
				}
			})
		}
		wg.Wait()
		for deadline := time.Now().Add(30 * time.Second); delivered.Load() < publishers*each && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		rate := publishers * each / time.Since(start).Seconds()
		if n := delivered.Load(); n != publishers*each {
			b.Errorf("the subscriber got %d of %d", n, publishers*each)
		}
		p.stop()
		return rate
	}
	for range b.N {
		auth := measure([]string{"--issuer", iss.URL}, true)
		open := measure([]string{"--insecure-allow-all"}, false)
		b.ReportMetric(auth, "msgs/s-auth")
		b.ReportMetric(open, "msgs/s-allow-all")
		b.ReportMetric(auth/open, "ratio")
	}
}
