// Command api runs the LiveShare service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "token" {
		err := runToken(os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "liveshare:", err)
			os.Exit(2)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "rekey" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := runRekey(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "liveshare:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := ParseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "liveshare:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := NewApp(cfg, os.Stderr).Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "liveshare:", err)
		os.Exit(1)
	}
}
