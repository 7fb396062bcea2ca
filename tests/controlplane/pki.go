package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pki is what the API server serves and authenticates with, written under the data directory.
type pki struct {
	caPEM      []byte
	certFile   string
	keyFile    string
	saKeyFile  string
	tokenFile  string
	adminToken string
}

// staticToken is one --token identity.
type staticToken struct {
	user, token string
	groups      []string
}

// parseToken reads USER=TOKEN[:GROUP,...].
func parseToken(v string) (staticToken, error) {
	user, rest, ok := strings.Cut(v, "=")
	if !ok || user == "" || rest == "" {
		return staticToken{}, fmt.Errorf("want USER=TOKEN[:GROUP,...], got %q", v)
	}
	token, groups, _ := strings.Cut(rest, ":")
	if token == "" || strings.ContainsAny(token, ",\"\n") {
		return staticToken{}, fmt.Errorf("token of %q is empty or holds a comma, quote or newline", user)
	}
	t := staticToken{user: user, token: token}
	if groups != "" {
		t.groups = strings.Split(groups, ",")
	}
	return t, nil
}

func writePKI(dir string, tokens []string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kube-controlplane-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create serving certificate: %w", err)
	}

	p := &pki{
		caPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certFile:  filepath.Join(dir, "apiserver.crt"),
		keyFile:   filepath.Join(dir, "apiserver.key"),
		saKeyFile: filepath.Join(dir, "service-account.key"),
		tokenFile: filepath.Join(dir, "tokens.csv"),
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(p.certFile, append(certPEM, p.caPEM...), 0o600); err != nil {
		return nil, err
	}
	if err := writeECKey(p.keyFile, key); err != nil {
		return nil, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeECKey(p.saKeyFile, saKey); err != nil {
		return nil, err
	}

	p.adminToken, err = randomToken()
	if err != nil {
		return nil, err
	}
	all := []staticToken{{user: "kube-controlplane-admin", token: p.adminToken, groups: []string{"system:masters"}}}
	for _, v := range tokens {
		t, err := parseToken(v)
		if err != nil {
			return nil, err
		}
		all = append(all, t)
	}
	return p, writeTokenFile(p.tokenFile, all)
}

// writeTokenFile writes the API server's --token-auth-file: token,user,uid,"group1,group2".
func writeTokenFile(path string, tokens []staticToken) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	for _, t := range tokens {
		row := []string{t.token, t.user, t.user}
		if len(t.groups) > 0 {
			row = append(row, strings.Join(t.groups, ","))
		}
		if err := w.Write(row); err != nil {
			f.Close()
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeECKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// writeKubeconfig writes a kubeconfig for a bearer token, atomically (rename), so that a reader
// polling for the file never sees half of it.
func writeKubeconfig(path, server string, caPEM []byte, token string) error {
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-controlplane
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: kube-controlplane
  context:
    cluster: kube-controlplane
    user: admin
    namespace: default
current-context: kube-controlplane
`, server, base64(caPEM), token)
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
