package statuspage

import (
	_ "embed"
	"net/http"
)

//go:embed page.html
var page []byte

// ServePage serves the page (GET /).
func ServePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(page)
}
