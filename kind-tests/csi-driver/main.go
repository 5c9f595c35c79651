// TEST INFRASTRUCTURE ONLY — not part of Hort and never to be used for real data.
//
// hort-csi-driver is a small CSI driver for Hort's local test cluster (kind-tests/). Volumes are
// plain directories on the node, a snapshot is a copy of one (`cp -a --reflink=auto`), and a pod
// gets its volume as a bind mount. It exists because no CSI driver with snapshot support could be
// built here from the Go module proxy; it lets the real snapshot-controller, csi-snapshotter and
// csi-provisioner run end to end. One process serves the Identity, Controller, GroupController and
// Node services on one socket, plus the kubelet's plugin-registration service (so no
// node-driver-registrar is needed). See kind-tests/README.md, "The CSI test driver".
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

const driverVersion = "0.1.0-test"

func main() {
	name := flag.String("name", "csi.hort.test", "CSI driver name")
	endpoint := flag.String("endpoint", "", "path of the CSI unix socket (the sidecars and the kubelet connect to it)")
	nodeID := flag.String("node-id", "", "this node's name")
	stateDir := flag.String("state-dir", "", "directory holding all volumes and snapshots")
	regDir := flag.String("registration-dir", "", "the kubelet's plugins_registry directory (empty: do not register with the kubelet)")
	flag.Parse()
	if *endpoint == "" || *nodeID == "" || *stateDir == "" {
		log.Fatal("--endpoint, --node-id and --state-dir are required")
	}

	st, err := openStore(*stateDir)
	if err != nil {
		log.Fatal(err)
	}
	d := &driver{name: *name, nodeID: *nodeID, store: st}

	csiServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiServer, d)
	csi.RegisterControllerServer(csiServer, d)
	csi.RegisterGroupControllerServer(csiServer, d)
	csi.RegisterNodeServer(csiServer, d)
	serve(csiServer, *endpoint)

	var regServer *grpc.Server
	regSocket := ""
	if *regDir != "" {
		regSocket = filepath.Join(*regDir, *name+"-reg.sock")
		regServer = grpc.NewServer(grpc.UnaryInterceptor(logCalls))
		registerapi.RegisterRegistrationServer(regServer, &registration{name: *name, endpoint: *endpoint})
		serve(regServer, regSocket)
	}
	log.Printf("%s %s serving on %s (node %s, state %s)", *name, driverVersion, *endpoint, *nodeID, *stateDir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	if regServer != nil {
		regServer.Stop()
		_ = os.Remove(regSocket)
	}
	csiServer.GracefulStop()
	_ = os.Remove(*endpoint)
}

// serve listens on a fresh unix socket (a stale one from a killed run is removed) and serves
// in the background.
func serve(s *grpc.Server, socket string) {
	if err := os.MkdirAll(filepath.Dir(socket), 0o750); err != nil {
		log.Fatal(err)
	}
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := s.Serve(l); err != nil {
			log.Fatalf("serving %s: %v", socket, err)
		}
	}()
}

// logCalls logs every RPC, with its error if any; successful frequent queries are not logged.
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	switch {
	case err != nil:
		log.Printf("%s %v: error: %v", info.FullMethod, req, err)
	case !quiet[info.FullMethod]:
		log.Printf("%s %v: ok", info.FullMethod, req)
	}
	return resp, err
}

var quiet = map[string]bool{
	"/csi.v1.Identity/Probe":           true,
	"/csi.v1.Identity/GetPluginInfo":   true,
	"/csi.v1.Node/NodeGetCapabilities": true,
	"/csi.v1.Controller/ListSnapshots": true,
}
