package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"trackgate/cloud"
	"trackgate/cloud/auth"
	"trackgate/cloud/store"
	"trackgate/internal/config"
)

// admin runs the commands that manage the data directory: "user add",
// "user passwd", "user totp", "device add", "device rm", "client add" and "keys rotate".
func admin(ctx context.Context, command string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cloud "+command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg cloud.Config
	cfg.RegisterDataFlags(fs)
	var owner, name, scope, jwkFile string
	var service, confidential bool
	var redirects listFlag
	var lead, autoSplit time.Duration
	synopsis := "cloud " + command + " [flags]"
	var nargs int
	switch command {
	case "user add", "user totp", "user passwd":
		synopsis, nargs = "cloud "+command+" [flags] NAME", 1
	case "device add":
		fs.StringVar(&owner, "owner", "", "user `name` of the device's owner (required)")
		fs.StringVar(&name, "name", "", "a display `name` for the device")
		fs.DurationVar(&autoSplit, "auto-split", 0, "give the device automatic tracks: a new one after a gap in its positions longer than this `duration` (e.g. 10m), closed after that long without positions; 0: off")
		fs.StringVar(&jwkFile, "jwk", "", "a tracker's public key `file` (a JWK, ES256 or Ed25519): the tracker gets its own tokens with private_key_jwt, and no token is printed")
		synopsis, nargs = "cloud device add --owner NAME [flags] DEVICE", 1
	case "device rm":
		synopsis, nargs = "cloud device rm [flags] DEVICE", 1
	case "client add":
		fs.BoolVar(&service, "service", false, "a confidential service client for the client credentials grant")
		fs.Var(&redirects, "redirect-uri", "an app client's redirect `URI` (repeatable): https, http://127.0.0.1/… (any port), or an app's own scheme")
		fs.BoolVar(&confidential, "confidential", false, "the app client gets a secret (a server-side app); without it the app is public and uses PKCE alone")
		fs.StringVar(&scope, "scope", "", "space-separated `scopes` the client may ask for (default: "+strings.Join(auth.ServiceScopes, " ")+" for a service, every user scope for an app; a firmware-bridge's is \""+strings.Join(auth.BridgeScopes, " ")+"\")")
		synopsis, nargs = "cloud client add (--service | --redirect-uri URI...) [flags] NAME", 1
	case "keys rotate":
		fs.DurationVar(&lead, "rotation-lead", 10*time.Minute, "how long the new key is published before it signs (at least the verifiers' JWKS refresh interval)")
	default:
		return config.Usagef("unknown command %q", "cloud "+command)
	}
	if err := config.Parse(fs, synopsis, args, nil); err != nil {
		return err
	}
	// Flags may also follow the arguments: cloud user add ann --data DIR.
	var positional []string
	for fs.NArg() > 0 {
		positional = append(positional, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return &config.UsageError{Err: err}
		}
	}
	if len(positional) != nargs {
		return config.Usagef("%s: want %d argument(s), got %d", synopsis, nargs, len(positional))
	}
	if command == "device add" && owner == "" {
		return config.Usagef("%s: --owner is required", synopsis)
	}
	if command == "client add" && service == (len(redirects) > 0) {
		return config.Usagef("%s: give --service, or the app's --redirect-uri, not both", synopsis)
	}
	a, st, err := cloud.OpenAuth(ctx, cfg.Data, cfg.Auth)
	if err != nil {
		return err
	}
	defer st.Close()
	var arg string
	if nargs > 0 {
		arg = positional[0]
	}
	switch command {
	case "user add":
		password, err := readPassword(stdin)
		if err != nil {
			return err
		}
		if err := a.AddUser(ctx, arg, password); err != nil {
			return friendly(err)
		}
		fmt.Fprintf(stderr, "user %s added\n", arg)
	case "user totp":
		uri, err := a.EnrolTOTP(ctx, arg)
		if err != nil {
			return friendly(err)
		}
		fmt.Fprintln(stdout, uri)
		fmt.Fprintln(stderr, "add this URI to an authenticator app now: it is not shown again")
	case "user passwd":
		password, err := readPassword(stdin)
		if err != nil {
			return err
		}
		if err := a.SetPassword(ctx, arg, password); err != nil {
			return friendly(err)
		}
		fmt.Fprintf(stderr, "password of %s changed; the user's sign-ins elsewhere are revoked\n", arg)
	case "device add":
		var jwk []byte
		if jwkFile != "" {
			if jwk, err = os.ReadFile(jwkFile); err != nil {
				return err
			}
		}
		if autoSplit < 0 || autoSplit%time.Minute != 0 {
			return config.Usagef("%s: --auto-split is a whole number of minutes, e.g. 10m", synopsis)
		}
		tok, err := a.AddDevice(ctx, owner, arg, name, jwk)
		if err != nil {
			return friendly(err)
		}
		if autoSplit > 0 {
			if err := st.SetDeviceSettings(ctx, arg, name, autoSplit); err != nil {
				return err
			}
		}
		if jwk != nil {
			fmt.Fprintf(stderr, "tracker %s registered: it gets its tokens at %s/token with private_key_jwt (client_id %s)\n", arg, cfg.Auth.Issuer, arg)
			break
		}
		fmt.Fprintln(stdout, tok)
	case "device rm":
		if err := a.RemoveDevice(ctx, arg); err != nil {
			return friendly(err)
		}
		fmt.Fprintf(stderr, "device %s deleted; its token is revoked\n", arg)
	case "client add":
		var id, secret string
		if service {
			id, secret, err = a.AddServiceClient(ctx, arg, strings.Fields(scope))
		} else {
			id, secret, err = a.AddAppClient(ctx, arg, redirects, strings.Fields(scope), confidential)
		}
		if err != nil {
			return friendly(err)
		}
		out := map[string]string{"client_id": id}
		if secret != "" {
			out["client_secret"] = secret
			defer fmt.Fprintln(stderr, "keep the secret now: only its hash is stored")
		}
		b, _ := json.Marshal(out)
		fmt.Fprintf(stdout, "%s\n", b)
	case "keys rotate":
		rec, err := a.Keys().Rotate(ctx, time.Now(), lead)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "key %s published; it signs from %s\n", rec.ID, rec.SignsFrom.Format(time.RFC3339))
	}
	return nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// readPassword reads one line from r: the password, without its line end.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", config.Usagef("no password on standard input")
	}
	return line, nil
}

// friendly turns the store's not-found and exists errors into usage-style
// messages that say what to do.
func friendly(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%w (check the name, or add it first)", err)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%w (pick another name, or remove the old one first)", err)
	}
	return err
}
