package handlers

import (
	"reflect"
	"testing"
)

// opsBodies are bodies of POST /rooms/{room}/ops the fast path takes, and
// ones it must leave to the general decoder (each of them, for one reason).
var opsBodies = []string{
	// taken
	`{"ops":[{"op":"update_node","id":"n1","patch":{"x":1}}]}`,
	` {"ops" : [ {"op":"add_node","node":{"id":"n1","kind":"t"}} , {"op":"remove_node","id":"n1"} ] } ` + "\n",
	`{"client_id":"tab-1","base_version":7,"ops":[{"op":"remove_edge","id":"e"}]}`,
	`{"ops":[{"op":"remove_edge","id":"e"}],"client_id":null,"base_version":null}`,
	`{"ops":[{"op":"remove_edge","id":"\u00e9\"\\"}],"client_id":"\u00e9\ud83d\ude00"}`,
	`{"ops":[],"base_version":-3}`,
	`{"ops":null}`,
	`{}`,
	`{"base_version":0,"ops":[{}]}`,
	// left to the general decoder
	``,
	`   `,
	`[]`,
	`null`,
	`{"ops":[{"op":"add_node"}]`,
	`{"ops":[{"op":"add_node"}]} {}`,
	`{"ops":[{"op":"add_node"}]} x`,
	`{"Ops":[{"op":"remove_node","id":"n"}]}`,
	`{"OPS":[{"op":"remove_node","id":"n"}],"ops":[]}`,
	`{"ops":[{"op":"remove_node","id":"n"}],"ops":[]}`,
	`{"ops":[{"op":"remove_node","id":"n","id":"m"}]}`,
	`{"ops":[1,{"op":"remove_node","id":"n"}]}`,
	`{"ops":[null]}`,
	`{"ops":[[]]}`,
	`{"ops":{"op":"remove_node"}}`,
	`{"ops":"x"}`,
	`{"ops":[{"op":"remove_node","id":"n"}],"client_id":5}`,
	`{"ops":[{"op":"remove_node","id":"n"}],"base_version":1.0}`,
	`{"ops":[{"op":"remove_node","id":"n"}],"base_version":1e2}`,
	`{"ops":[{"op":"remove_node","id":"n"}],"base_version":99999999999999999999}`,
	`{"ops":[{"op":"remove_node","id":"n"}],"base_version":"1"}`,
	`{"ops":[{"op":"remove_node","id":"n"}],"extra":1}`,
	`{"ops":[{"op":"remove_node","id":"a\u0000b"}]}`,
	`{"ops":[{"op":"remove_node","id":"\ud800"}]}`,
	"{\"ops\":[{\"op\":\"remove_node\",\"id\":\"\xff\"}]}",
	`{"ops":[{"op":"remove_node","id":"n"}],"client_id":"\ud800"}`,
}

// TestDecodeOpsFastAgrees checks that whatever the fast path of the op
// post takes, the general decoder decodes to the same request; and that
// it leaves every body the general decoder refuses to it, so that those
// are refused with the words they always had.
func TestDecodeOpsFastAgrees(t *testing.T) {
	taken := 0
	for _, body := range opsBodies {
		if checkDecodeOpsFast(t, []byte(body)) {
			taken++
		}
	}
	if taken != 9 {
		t.Errorf("the fast path took %d of the bodies, want the first 9", taken)
	}
}

func FuzzDecodeOpsFast(f *testing.F) {
	for _, body := range opsBodies {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkDecodeOpsFast(t, body) })
}

func checkDecodeOpsFast(t *testing.T, body []byte) (taken bool) {
	t.Helper()
	orig := string(body)
	fast, ok := decodeOpsFast(body)
	if string(body) != orig {
		t.Fatalf("decodeOpsFast changed the body %q", orig)
	}
	var slow postOpsRequest
	err := decodeBody(body, &slow, false)
	if !ok {
		return false
	}
	if err != nil {
		t.Fatalf("body %q: the fast path took what the general decoder refuses: %v", body, err)
	}
	if len(fast.Ops) == 0 && len(slow.Ops) == 0 {
		fast.Ops, slow.Ops = nil, nil // null, [] and absent are all "no ops"
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("body %q: fast path %+v, general decoder %+v", body, fast, slow)
	}
	return true
}
