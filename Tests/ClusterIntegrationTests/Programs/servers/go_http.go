// Go's net/http under `cluster run`: serves on the socket at fd 3 (systemd socket
// activation); on SIGTERM, Shutdown stops accepting and waits for requests in flight.
// BOOT_DELAY_MS: wait before serving.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") != "1" {
		fmt.Fprintln(os.Stderr, "go_http: expected one socket by socket activation")
		os.Exit(1)
	}
	delay, _ := strconv.Atoi(os.Getenv("BOOT_DELAY_MS"))
	time.Sleep(time.Duration(delay) * time.Millisecond)
	listener, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_http:", err)
		os.Exit(1)
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "go %d\n", os.Getpid())
	})}
	done := make(chan struct{})
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM)
		<-signals
		server.Shutdown(context.Background())
		close(done)
	}()
	if err := server.Serve(listener); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "go_http:", err)
		os.Exit(1)
	}
	<-done
}
