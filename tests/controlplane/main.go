// kube-controlplane: a real Kubernetes control plane in one process, for kubetempura's tests and
// demo. It runs embedded etcd, kube-apiserver (TLS on loopback, RBAC authorization, static
// tokens and ServiceAccount tokens) and kube-controller-manager with the garbage-collector,
// namespace and serviceaccount controllers, all built from the Kubernetes Go modules. It writes
// an admin kubeconfig once the API server answers /readyz, serves until SIGTERM or SIGINT,
// then stops every component and removes its data.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

type tokenFlag []string

func (t *tokenFlag) String() string { return strings.Join(*t, ",") }
func (t *tokenFlag) Set(v string) error {
	if _, err := parseToken(v); err != nil {
		return err
	}
	*t = append(*t, v)
	return nil
}

const usage = `kube-controlplane: etcd, kube-apiserver and kube-controller-manager in one process.

Usage:
  kube-controlplane --kubeconfig PATH [--port N] [--token USER=TOKEN[:GROUP,...]]...

Writes an admin kubeconfig to PATH once the API server answers /readyz, serves until SIGTERM
or SIGINT, then exits and removes its data directory.

Flags:
`

func main() {
	os.Exit(run())
}

func run() int {
	var (
		kubeconfig  string
		port        int
		tokens      tokenFlag
		verbosity   int
		controllers string
	)
	fs := flag.NewFlagSet("kube-controlplane", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&kubeconfig, "kubeconfig", "", "where to write the admin kubeconfig (required)")
	fs.IntVar(&port, "port", 0, "the API server's port on 127.0.0.1 (0: a free port)")
	fs.Var(&tokens, "token", "a static bearer-token identity USER=TOKEN[:GROUP,...] (repeatable)")
	fs.IntVar(&verbosity, "v", 0, "log verbosity of the Kubernetes components (klog -v)")
	fs.StringVar(&controllers, "controllers", "garbagecollector,namespace,serviceaccount",
		"kube-controller-manager controllers to run")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if kubeconfig == "" || fs.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "kube-controlplane: --kubeconfig PATH is required and no arguments are taken")
		fs.Usage()
		return 2
	}

	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", fmt.Sprint(verbosity))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if err := serve(ctx, kubeconfig, port, tokens, controllers); err != nil {
		fmt.Fprintf(os.Stderr, "kube-controlplane: %v\n", err)
		return 1
	}
	return 0
}

// serve starts the components, writes the kubeconfig, waits for ctx and tears everything down.
func serve(ctx context.Context, kubeconfig string, port int, tokens []string, controllers string) error {
	started := time.Now()
	dir, err := os.MkdirTemp("", "kube-controlplane-")
	if err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "kube-controlplane: data directory %s\n", dir)

	pki, err := writePKI(dir, tokens)
	if err != nil {
		return err
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"))
	if err != nil {
		return err
	}
	defer etcd.stop()

	compCtx, cancel := context.WithCancel(context.Background())
	defer cancel()

	api, err := startAPIServer(compCtx, dir, pki, etcd.clientURL, port)
	if err != nil {
		return err
	}
	if err := waitReady(ctx, api, pki); err != nil {
		cancel()
		api.wait()
		return err
	}
	kcmConfig := filepath.Join(dir, "controller-manager.kubeconfig")
	if err := writeKubeconfig(kcmConfig, api.url, pki.caPEM, pki.adminToken); err != nil {
		return err
	}
	kcm, err := startControllerManager(compCtx, kcmConfig, controllers)
	if err != nil {
		cancel()
		api.wait()
		return err
	}
	if err := writeKubeconfig(kubeconfig, api.url, pki.caPEM, pki.adminToken); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kube-controlplane: ready at %s in %s, kubeconfig %s\n",
		api.url, time.Since(started).Round(time.Millisecond), kubeconfig)

	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "kube-controlplane: stopping")
	case err := <-api.done:
		cancel()
		kcm.wait()
		return fmt.Errorf("kube-apiserver stopped: %v", err)
	case err := <-kcm.done:
		cancel()
		api.wait()
		return fmt.Errorf("kube-controller-manager stopped: %v", err)
	}
	cancel()
	kcm.wait()
	api.wait()
	return nil
}

// component is a running Kubernetes component: done yields its error once it has stopped.
type component struct {
	done chan error
	url  string
}

// wait blocks until the component has stopped, for at most 20 seconds.
func (c *component) wait() {
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		fmt.Fprintln(os.Stderr, "kube-controlplane: a component did not stop within 20s")
	}
}
