package inet

import "testing"

func TestProtoName(t *testing.T) {
	for _, tc := range []struct {
		proto uint8
		want  string
	}{{TCP, "tcp"}, {UDP, "udp"}, {SCTP, "sctp"}, {1, "1"}, {255, "255"}} {
		if got := ProtoName(tc.proto); got != tc.want {
			t.Errorf("ProtoName(%d) = %q, want %q", tc.proto, got, tc.want)
		}
	}
}
