package api

import (
	_ "embed"
	"net/http"
)

// statusPage is the live status page of GET /: one file with inline CSS and script and no
// external assets, so it works on an isolated network. It polls /v1/status every second.
//
//go:embed statuspage.html
var statusPage []byte

func serveStatusPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(statusPage)
}
