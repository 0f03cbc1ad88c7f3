package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sibylhq/sibyl/location"
	"github.com/sibylhq/sibyl/node"
	"github.com/sibylhq/sibyl/tlsconf"
)

// devHost is where dev runs every process.
const devHost = "127.0.0.1"

// Port offsets of docs/protocol.md §5: controller i at base+i (HTTP) and base+50+i (raft),
// node i at base+100+i.
const (
	raftPortOffset = 50
	nodePortOffset = 100
)

// devController is one controller of a dev cluster. Index is 1-based over all locations.
type devController struct {
	Index    int
	ID       string
	HTTP     string
	Raft     string
	Location string
}

// devNode is one node of a dev cluster.
type devNode struct {
	ID          uint16
	HTTP        string
	Location    string
	Controllers []string // HTTP addresses of its location's controllers
}

// devLayout is where every process of a dev cluster listens.
type devLayout struct {
	Controllers []devController
	Nodes       []devNode
}

// locationName names location l (1-based) of a dev cluster.
func locationName(l int) string { return "loc" + strconv.Itoa(l) }

// layoutDev places perLocation controllers in each of locations locations (controller ids
// c1..cN, numbered on across locations, so the ports continue upward) and nodes nodes
// spread round-robin over the locations. It is pure, so tests check the exact ports.
func layoutDev(base, nodes, perLocation, locations int) (devLayout, error) {
	switch {
	case nodes < 1:
		return devLayout{}, fmt.Errorf("--nodes %d: want at least 1", nodes)
	case perLocation < 1:
		return devLayout{}, fmt.Errorf("--controllers %d: want at least 1", perLocation)
	case locations < 1:
		return devLayout{}, fmt.Errorf("--locations %d: want at least 1", locations)
	case perLocation*locations >= raftPortOffset:
		// Controller HTTP ports would run into the raft ports.
		return devLayout{}, fmt.Errorf("--controllers %d x --locations %d: at most %d controllers fit below the raft ports",
			perLocation, locations, raftPortOffset-1)
	case nodes > 65535:
		return devLayout{}, fmt.Errorf("--nodes %d: server IDs end at 65535", nodes)
	case base < 1 || base+nodePortOffset+nodes > 65535:
		return devLayout{}, fmt.Errorf("--base-port %d with %d nodes: ports %d..%d do not fit in 1..65535",
			base, nodes, base+1, base+nodePortOffset+nodes)
	}
	var l devLayout
	byLocation := map[string][]string{}
	for loc := 1; loc <= locations; loc++ {
		for j := 1; j <= perLocation; j++ {
			i := (loc-1)*perLocation + j
			c := devController{
				Index: i, ID: "c" + strconv.Itoa(i), Location: locationName(loc),
				HTTP: hostPort(base + i), Raft: hostPort(base + raftPortOffset + i),
			}
			l.Controllers = append(l.Controllers, c)
			byLocation[c.Location] = append(byLocation[c.Location], c.HTTP)
		}
	}
	for i := 1; i <= nodes; i++ {
		loc := locationName((i-1)%locations + 1)
		l.Nodes = append(l.Nodes, devNode{
			ID: uint16(i), HTTP: hostPort(base + nodePortOffset + i), Location: loc,
			Controllers: byLocation[loc],
		})
	}
	return l, nil
}

func hostPort(port int) string { return devHost + ":" + strconv.Itoa(port) }

// peersOf returns the raft peers of a controller's location (itself included).
func (l devLayout) peersOf(c devController) map[string]string {
	peers := map[string]string{}
	for _, o := range l.Controllers {
		if o.Location == c.Location {
			peers[o.ID] = o.Raft
		}
	}
	return peers
}

// locationNames lists the layout's locations in order.
func (l devLayout) locationNames() []string {
	var out []string
	for _, c := range l.Controllers {
		if !slices.Contains(out, c.Location) {
			out = append(out, c.Location)
		}
	}
	return out
}

// inLocation is the part of the layout in location loc.
func (l devLayout) inLocation(loc string) devLayout {
	var out devLayout
	for _, c := range l.Controllers {
		if c.Location == loc {
			out.Controllers = append(out.Controllers, c)
		}
	}
	for _, n := range l.Nodes {
		if n.Location == loc {
			out.Nodes = append(out.Nodes, n)
		}
	}
	return out
}

// othersOf returns the HTTP addresses of the controllers of every location but c's, by
// location: c's --locations.
func (l devLayout) othersOf(c devController) map[string][]string {
	out := map[string][]string{}
	for _, o := range l.Controllers {
		if o.Location != c.Location {
			out[o.Location] = append(out[o.Location], o.HTTP)
		}
	}
	return out
}

// devOptions are the settings dev passes through to its children.
type devOptions struct {
	Exe          string // absolute path of this executable
	Dir          string // absolute data directory of the cluster
	WriteTimeout time.Duration
	DownAfter    time.Duration
	LogLevel     string
	// MaxClockDrift is passed to nodes only when it is not the nodes' default, so that the
	// children's command lines name only what dev was told.
	MaxClockDrift float64
	// NodeFlags are appended to every node's command line.
	NodeFlags []string
	// CopyTimeout is passed to controllers only when it is not their default.
	CopyTimeout time.Duration
	// ClusterSecret, when set, is given to every controller and node (--cluster-secret).
	ClusterSecret string
	// AdminTokens, when set, are given to every controller and node (--admin-token).
	AdminTokens []string
	// TLS, when set, holds every process's certificate, key and the CA, by process name
	// (controller ID, nodeName): dev --tls.
	TLS map[string]tlsconf.Files
	// WANDelay, when positive, is given to every controller and node (--wan-delay).
	WANDelay time.Duration
}

// tlsArgs are the flags that make process name serve and call over TLS.
func (o devOptions) tlsArgs(name string) []string {
	f, ok := o.TLS[name]
	if !ok {
		return nil
	}
	return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
}

// wanArgs are the flags that give a child the one-way delay between locations.
func (o devOptions) wanArgs() []string {
	if o.WANDelay <= 0 {
		return nil
	}
	return []string{"--wan-delay", o.WANDelay.String()}
}

// securityArgs are the flags that give a child the cluster's secret and admin tokens.
func (o devOptions) securityArgs() []string {
	var args []string
	if o.ClusterSecret != "" {
		args = append(args, "--cluster-secret", o.ClusterSecret)
	}
	for _, t := range o.AdminTokens {
		args = append(args, "--admin-token", t)
	}
	return args
}

// controllerArgs is the full command line (args[0] the executable) that starts c, or
// starts it again on its own data after a crash.
func (l devLayout) controllerArgs(o devOptions, c devController) []string {
	args := []string{o.Exe, "location",
		"--id", c.ID, "--http", c.HTTP, "--raft", c.Raft,
		"--data", filepath.Join(o.Dir, c.ID),
		"--peers", formatPeers(l.peersOf(c)),
		"--location", c.Location,
		"--down-after", o.DownAfter.String(),
		"--log-level", o.LogLevel,
	}
	if others := l.othersOf(c); len(others) > 0 {
		args = append(args, "--locations", formatLocations(others))
	}
	if o.CopyTimeout != 0 && o.CopyTimeout != location.DefaultCopyTimeout {
		args = append(args, "--copy-timeout", o.CopyTimeout.String())
	}
	args = append(args, o.tlsArgs(c.ID)...)
	args = append(args, o.wanArgs()...)
	return append(args, o.securityArgs()...)
}

// nodeFlagValue finds flag name among a node's extra flags (--name V, --name=V, and the
// one-dash forms the flag package accepts too): the value of its last occurrence.
func nodeFlagValue(flags []string, name string) (value string, ok bool) {
	for i := 0; i < len(flags); i++ {
		f := strings.TrimPrefix(strings.TrimPrefix(flags[i], "-"), "-")
		if f == name && i+1 < len(flags) {
			value, ok = flags[i+1], true
			i++
		} else if v, found := strings.CutPrefix(f, name+"="); found {
			value, ok = v, true
		}
	}
	return value, ok
}

// nodeName is a node's name in dev's directory: its data dir and log file.
func nodeName(n devNode) string { return "n" + strconv.Itoa(int(n.ID)) }

func nodeArgs(o devOptions, n devNode) []string {
	args := []string{o.Exe, "node",
		"--id", strconv.Itoa(int(n.ID)), "--http", n.HTTP,
		"--data", filepath.Join(o.Dir, nodeName(n)),
		"--location", n.Location,
		"--controllers", strings.Join(n.Controllers, ","),
		"--write-timeout", o.WriteTimeout.String(),
		"--down-after", o.DownAfter.String(),
		"--log-level", o.LogLevel,
	}
	if o.MaxClockDrift != 0 && o.MaxClockDrift != node.DefaultMaxClockDrift {
		args = append(args, "--max-clock-drift", strconv.FormatFloat(o.MaxClockDrift, 'g', -1, 64))
	}
	args = append(args, o.tlsArgs(nodeName(n))...)
	args = append(args, o.wanArgs()...)
	args = append(args, o.securityArgs()...)
	return append(args, o.NodeFlags...)
}

// clusterFile is DIR/cluster.json (docs/protocol.md §5). Scenarios and black-box tests read it
// to find, kill and restart processes; the field names are the contract. Log is extra.
type clusterFile struct {
	Controllers []clusterController `json:"controllers"`
	Nodes       []clusterNode       `json:"nodes"`
	// Auth is set when the cluster checks tokens (dev --admin-token or --auth).
	Auth *clusterAuth `json:"auth,omitempty"`
	// TLS is set when the cluster serves TLS (dev --tls).
	TLS *clusterTLS `json:"tls,omitempty"`
}

// clusterAuth is what a client of a dev cluster with tokens needs: the admin token, which
// creates roles and their tokens.
type clusterAuth struct {
	AdminToken string `json:"adminToken"`
}

// clusterTLS names the CA a dev cluster's certificates verify with.
type clusterTLS struct {
	CA string `json:"ca"`
}

type clusterController struct {
	ID       string   `json:"id"`
	HTTP     string   `json:"http"`
	Raft     string   `json:"raft"`
	PID      int      `json:"pid"`
	Location string   `json:"location"`
	Args     []string `json:"args"`
	Log      string   `json:"log"`
}

type clusterNode struct {
	ID       uint16   `json:"id"`
	HTTP     string   `json:"http"`
	PID      int      `json:"pid"`
	Location string   `json:"location"`
	Args     []string `json:"args"`
	Log      string   `json:"log"`
}

// writeClusterFile writes path atomically: a reader sees no file or the whole file.
func writeClusterFile(path string, cf clusterFile) error {
	b, err := json.MarshalIndent(cf, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cluster-*.json")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

// readClusterFile reads a cluster.json written by dev.
func readClusterFile(path string) (clusterFile, error) {
	var cf clusterFile
	b, err := os.ReadFile(path)
	if err != nil {
		return cf, err
	}
	if err := json.Unmarshal(b, &cf); err != nil {
		return cf, fmt.Errorf("decode %s: %w", path, err)
	}
	return cf, nil
}
