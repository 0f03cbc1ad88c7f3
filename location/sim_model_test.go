package location

import (
	"encoding/json"

	"github.com/anishathalye/porcupine"

	"github.com/sibylhq/sibyl/command"
)

// The porcupine model of the simulation's resources: each resource is its own register
// (porcupine checks them apart), written by create, update, patch and delete and read by
// linearizable get. Data is {"v":n} with an optional "p" that only patch sets.

type regInput struct {
	Op        string
	RID       string // "" for create
	V, P      uint64
	IfVersion uint64 // 0: none
}

type regOutput struct {
	Code    command.Code // the refusal, "" on success
	RID     string       // create: the rid made
	V, P    uint64
	Version uint64
}

type regState struct {
	Exists, Gone bool
	V, P         uint64
	Version      uint64
}

type regData struct {
	V uint64 `json:"v,omitempty"`
	P uint64 `json:"p,omitempty"`
}

// outputOf is what a resource in a reply or an effect says.
func outputOf(res *command.Resource) regOutput {
	if res == nil {
		return regOutput{}
	}
	var d regData
	_ = json.Unmarshal(res.Data, &d)
	return regOutput{RID: res.ID, V: d.V, P: d.P, Version: res.Version}
}

func (in regInput) rid(out regOutput) string {
	if in.Op == command.OpCreate {
		return out.RID
	}
	return in.RID
}

var regModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byRID := map[string][]porcupine.Operation{}
		var order []string
		for _, op := range history {
			rid := op.Input.(regInput).rid(op.Output.(regOutput))
			if _, ok := byRID[rid]; !ok {
				order = append(order, rid)
			}
			byRID[rid] = append(byRID[rid], op)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, rid := range order {
			out = append(out, byRID[rid])
		}
		return out
	},
	Init: func() interface{} { return regState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(regState), input.(regInput), output.(regOutput)
		switch in.Op {
		case command.OpCreate:
			if st.Exists || st.Gone || out.Code != "" || out.Version != 1 || out.V != in.V || out.P != 0 {
				return false, st
			}
			return true, regState{Exists: true, V: in.V, Version: 1}
		case "get":
			if !st.Exists {
				return out.Code == command.CodeNotFound, st
			}
			return out.Code == "" && out.V == st.V && out.P == st.P && out.Version == st.Version, st
		}
		// update, patch, delete
		switch {
		case !st.Exists:
			return out.Code == command.CodeNotFound, st
		case in.IfVersion != 0 && in.IfVersion != st.Version:
			return out.Code == command.CodeConflict, st
		case out.Code != "":
			return false, st
		}
		next := regState{Exists: true, V: in.V, Version: st.Version + 1}
		switch in.Op {
		case command.OpPatch:
			next.V, next.P = st.V, in.P
		case command.OpDelete:
			return true, regState{Gone: true, Version: st.Version + 1}
		}
		return out.V == next.V && out.P == next.P && out.Version == next.Version, next
	},
}
