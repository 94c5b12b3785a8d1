// Command ceiling is the do-nothing server of docs/BENCHMARKS.md: it reads
// a POST's body and answers 201 with a small JSON body, so that wrk against
// it measures the most any Go net/http service can answer on the machine,
// beside the ingest rows measured the same way.
//
//	go run ./docs/bench/ceiling 127.0.0.1:18099 &
//	wrk -t2 -c32 -d10s --latency -s post.lua http://127.0.0.1:18099/
package main

import (
	"io"
	"log"
	"net/http"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: ceiling host:port")
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"version":12345,"ops":1}`))
	})
	log.Fatal(http.ListenAndServe(os.Args[1], nil))
}
