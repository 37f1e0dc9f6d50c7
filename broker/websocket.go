package broker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsListener serves MQTT over WebSocket (subprotocol "mqtt", binary frames)
// on a listener the broker opened, on any path.
type wsListener struct {
	id  string
	ln  net.Listener
	log *slog.Logger
	srv *http.Server

	closeOnce sync.Once
}

var _ listeners.Listener = (*wsListener)(nil)

func newWebSocket(id string, ln net.Listener) *wsListener {
	return &wsListener{id: id, ln: ln}
}

// ID returns the listener's name.
func (l *wsListener) ID() string { return l.id }

// Address returns the bound address.
func (l *wsListener) Address() string { return l.ln.Addr().String() }

// Protocol returns "ws".
func (l *wsListener) Protocol() string { return "ws" }

// Init builds the HTTP server that upgrades connections.
func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	l.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// Serve accepts WebSocket upgrades and hands each connection to establish
// until Close.
func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols: []string{"mqtt", "mqttv3.1"},
			// MQTT clients in browsers connect from pages of any origin;
			// authentication is by token, never by cookie.
			InsecureSkipVerify: true,
		})
		if err != nil {
			return
		}
		c.SetReadLimit(-1) // the broker enforces packet size limits
		conn := websocket.NetConn(context.Background(), c, websocket.MessageBinary)
		defer conn.Close()
		if err := establish(l.id, conn); err != nil && !errors.Is(err, net.ErrClosed) {
			l.log.Debug("websocket client ended", "listener", l.id, "remote", r.RemoteAddr, "err", err)
		}
	})
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "listener", l.id, "err", err)
	}
}

// Close stops accepting, then disconnects the listener's clients. (Upgraded
// connections are hijacked, so Shutdown does not wait for them.)
func (l *wsListener) Close(closeClients listeners.CloseFn) {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.srv.Shutdown(ctx)
	})
	closeClients(l.id)
}
