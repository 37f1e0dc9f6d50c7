package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"trackgate/internal/atomicfile"
)

// sealer encrypts secrets kept in the store (TOTP secrets) with AES-256-GCM
// under a key in a file of mode 0600 in the data directory, so a copy of
// the database alone does not give them away.
type sealer struct{ aead cipher.AEAD }

const sealKeyFile = "secrets.key"

func openSealer(dir string) (*sealer, error) {
	path := filepath.Join(dir, sealKeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("secrets key: %w", err)
		}
		if err := atomicfile.Write(path, key); err != nil {
			return nil, fmt.Errorf("secrets key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets key %s: must exist with mode 0600", path)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("secrets key %s: want 32 bytes, have %d", path, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts plaintext: base64url(nonce | ciphertext).
func (s *sealer) seal(plaintext []byte) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plaintext, nil)), nil
}

// open decrypts what seal made.
func (s *sealer) open(sealed string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(b) < s.aead.NonceSize() {
		return nil, errors.New("unseal: malformed")
	}
	n := s.aead.NonceSize()
	out, err := s.aead.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("unseal: %w", err)
	}
	return out, nil
}
