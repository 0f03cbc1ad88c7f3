package location

import "net/http"

// handlePage serves the live status page: one self-contained HTML document (no external
// assets, so it works on an isolated network) that fetches /v1/status every second.
func (c *Controller) handlePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(statusPage))
}

const statusPage = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sibyl location status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
.up, .voting { color: #17702a; } .down { color: #b00020; font-weight: bold; }
.syncing, .spare { color: #9a6400; } .unreachable-loc { color: #b00020; font-weight: bold; } .warn, .unreachable { color: #b00020; } .stale { color: #777; }
#err { color: #b00020; }
</style>
</head>
<body>
<h1>Sibyl location status</h1>
<div id="meta"></div><div id="err"></div>
<h2>Locations</h2><table id="locations"></table>
<h2>Controllers</h2><table id="controllers"></table>
<h2>Nodes</h2><table id="nodes"></table>
<h2>Groups</h2><table id="groups"></table>
<script>
"use strict";
function esc(v) {
  return String(v === null || v === undefined ? "" : v).replace(/[&<>"]/g,
    function (c) { return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;"}[c]; });
}
function table(id, head, rows) {
  var h = "<tr>" + head.map(function (x) { return "<th>" + esc(x) + "</th>"; }).join("") + "</tr>";
  document.getElementById(id).innerHTML = h + rows.join("");
}
function render(s) {
  document.getElementById("meta").textContent = "Updated " + new Date().toLocaleTimeString() +
    " \u2014 locations: " + s.locations.map(function (l) { return l.name; }).join(", ");
  table("locations", ["name", "controllers", "leader", "reachable"], s.locations.map(function (l) {
    return "<tr><td>" + esc(l.name) + "</td><td>" + esc((l.controllers || []).join(", ")) + "</td><td>" +
      (l.leader === null || l.leader === undefined ? "<span class=\"down\">none known</span>" : esc(l.leader)) +
      "</td><td>" + (l.reachable ? "<span class=\"up\">yes</span>" : "<span class=\"unreachable-loc\">no</span>") + "</td></tr>";
  }));
  table("controllers", ["id", "address", "location", "leader"], s.controllers.map(function (c) {
    return "<tr><td>" + esc(c.id) + "</td><td>" + esc(c.addr) + "</td><td>" + esc(c.location) +
      "</td><td>" + (c.leader ? "leader" : "") + "</td></tr>";
  }));
  table("nodes", ["id", "address", "location", "state", "instance", "generation"], s.nodes.map(function (n) {
    return "<tr><td>" + esc(n.id) + "</td><td>" + esc(n.addr) + "</td><td>" + esc(n.location) +
      "</td><td class=\"" + esc(n.state) + "\">" + esc(n.state) + "</td><td>" + esc(n.instance) +
      "</td><td>" + esc(n.generation) + "</td></tr>";
  }));
  table("groups", ["server", "home", "main", "epoch", "seq", "siblings (node state lag)", "warning"], s.groups.map(function (g) {
    var sib = g.siblings.map(function (x) {
      var st = x.stale ? "stale" : x.unreachable ? "unreachable" : x.state;
      return "<span class=\"" + esc(st) + "\">" + esc(x.node) + " " + esc(x.state) + (x.stale ? " (stale)" : "") +
        (x.unreachable ? " (unreachable)" : "") + " " + esc(x.lagSeq) + "</span>";
    }).join("<br>");
    return "<tr><td>" + esc(g.server) + "</td><td>" + esc(g.home) + "</td><td>" + (g.main === null ? "<span class=\"down\">none</span>" : esc(g.main)) +
      "</td><td>" + esc(g.epoch) + "</td><td>" + esc(g.seq) + "</td><td>" + sib +
      "</td><td class=\"warn\">" + esc(g.warning) + "</td></tr>";
  }));
}
function poll() {
  fetch("/v1/status" + location.search, {cache: "no-store"}).then(function (r) {
    if (!r.ok) { throw new Error("HTTP " + r.status); }
    return r.json();
  }).then(function (s) {
    document.getElementById("err").textContent = "";
    render(s);
  }).catch(function (e) {
    document.getElementById("err").textContent = "status unavailable: " + e.message;
  });
}
poll();
setInterval(poll, 1000);
</script>
</body>
</html>
`
