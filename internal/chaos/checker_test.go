package chaos

import (
	"os"
	"testing"
	"time"
)

// ms is a CLOCK_MONOTONIC-like instant, in milliseconds, for synthetic
// histories.
func ms(n int64) int64 { return n * int64(time.Millisecond) }

// held is a successful record of worker w on resource "r": it returned at
// ret (ms), had its deadline at dl and released at rel (0: never).
func held(w string, ret, dl, rel int64) Record {
	return Record{Worker: w, Resource: "r", OK: true, Invoke: ms(ret - 1), Return: ms(ret), Deadline: ms(dl), Release: ms(rel)}
}

// follower is a successful Follow record of worker w on resource "r": it
// returned at ret (ms), saw the deadline dl last (after a longer one, at
// 300+dl), saw the lock invalid at inval and released at rel (0: never).
func follower(w string, ret, dl, inval, rel int64) Record {
	r := held(w, ret, 300+dl, rel)
	r.Follow, r.FinalDeadline, r.InvalidSeen = true, ms(dl), ms(inval)
	r.Extensions = []Extension{{Invoke: ms(ret + 1), Return: ms(ret + 2), OK: true, Racing: true, Prev: ms(300 + dl), Deadline: ms(dl)}}
	return r
}

func kinds(vs []Violation) map[string]int {
	out := map[string]int{}
	for _, v := range vs {
		out[v.Kind]++
	}
	return out
}

func TestCheckExclusion(t *testing.T) {
	cases := []struct {
		name string
		recs []Record
		want map[string]int
	}{
		{"disjoint", []Record{held("a", 0, 100, 50), held("b", 50, 150, 120), held("c", 120, 220, 0)}, map[string]int{}},
		{"release then acquire at the same instant", []Record{held("a", 0, 100, 50), held("b", 50, 150, 0)}, map[string]int{}},
		{"expired then acquired", []Record{held("a", 0, 100, 500), held("b", 100, 200, 150)}, map[string]int{}},
		{"failed calls do not count", []Record{held("a", 0, 100, 0), {Worker: "b", Resource: "r", Invoke: ms(10), Return: ms(20)}}, map[string]int{}},
		{"other resources do not count", []Record{held("a", 0, 100, 0), func() Record { r := held("b", 10, 100, 0); r.Resource = "s"; return r }()}, map[string]int{}},
		{"empty window (returned past its deadline)", []Record{held("a", 0, 100, 0), held("b", 50, 40, 0)}, map[string]int{}},
		{"overlap before the deadline", []Record{held("a", 0, 100, 0), held("b", 99, 200, 0)}, map[string]int{"overlap": 1}},
		{"overlap before the release", []Record{held("a", 0, 100, 60), held("b", 59, 200, 0)}, map[string]int{"overlap": 1}},
		{"nested in a long window", []Record{held("a", 0, 1000, 0), held("b", 100, 200, 150), held("c", 300, 400, 0)}, map[string]int{"overlap": 2}},
		{"extended deadline", []Record{func() Record {
			r := held("a", 0, 100, 0)
			r.Extensions = []Extension{{Invoke: ms(50), Return: ms(51), OK: true, Prev: ms(100), Deadline: ms(300)}}
			return r
		}(), held("b", 200, 300, 0)}, map[string]int{"overlap": 1}},
		{"failed extension does not extend", []Record{func() Record {
			r := held("a", 0, 100, 0)
			r.Extensions = []Extension{{Invoke: ms(50), Return: ms(51), Prev: ms(100), Deadline: ms(300)}}
			return r
		}(), held("b", 200, 300, 0)}, map[string]int{}},
		{"extension granted after the deadline", []Record{func() Record {
			r := held("a", 0, 100, 0)
			r.Extensions = []Extension{{Invoke: ms(90), Return: ms(101), OK: true, Prev: ms(100), Deadline: ms(190)}}
			return r
		}()}, map[string]int{"late-extension": 1}},
		{"revived", []Record{func() Record { r := held("a", 0, 100, 0); r.InvalidSeen, r.Revived = ms(50), ms(60); return r }()}, map[string]int{"revived": 1}},
		{"valid after deadline", []Record{func() Record { r := held("a", 0, 100, 0); r.ValidLate = ms(110); return r }()}, map[string]int{"valid-after-deadline": 1}},
		{"pause noticed", []Record{func() Record { r := held("a", 0, 100, 200); r.Paused, r.LostNoticed = ms(150), true; return r }()}, map[string]int{}},
		{"attempt paused past the TTL, failed", []Record{{Worker: "a", Resource: "r", TTL: ms(100), AcqPaused: ms(150), AcqPausedLast: ms(150), Invoke: 0, Return: ms(160)}}, map[string]int{}},
		{"attempt paused past the TTL, later attempt won", []Record{func() Record { r := held("a", 200, 290, 250); r.TTL, r.AcqPaused = ms(100), ms(150); return r }()}, map[string]int{}},
		{"attempt paused past the TTL, won with an empty window", []Record{func() Record {
			r := held("a", 200, 150, 0)
			r.TTL, r.AcqPaused, r.AcqPausedLast = ms(100), ms(150), ms(150)
			return r
		}()}, map[string]int{}},
		{"attempt paused past the TTL, won with validity", []Record{func() Record {
			r := held("a", 200, 290, 0)
			r.TTL, r.AcqPaused, r.AcqPausedLast = ms(100), ms(150), ms(150)
			return r
		}()}, map[string]int{"validity-after-pause": 1}},
		{"pause unnoticed", []Record{func() Record { r := held("a", 0, 100, 200); r.Paused = ms(150); return r }()}, map[string]int{"pause-unnoticed": 1}},
		// A racing holder (Follow) acts until the deadline it saw last: a
		// shorter extension moved it back from 300 to 120.
		{"follow: the deadline seen last ends the window", []Record{follower("a", 0, 120, 0, 0), held("b", 150, 250, 0)}, map[string]int{}},
		{"follow: overlap before the deadline seen last", []Record{follower("a", 0, 120, 0, 0), held("b", 110, 250, 0)}, map[string]int{"overlap": 1}},
		{"follow: the release ends the window", []Record{follower("a", 0, 120, 0, 80), held("b", 90, 250, 0)}, map[string]int{}},
		{"follow: seen invalid ends the window", []Record{follower("a", 0, 300, 90, 400), held("b", 100, 250, 0)}, map[string]int{}},
		{"follow: overlap before seen invalid", []Record{follower("a", 0, 300, 90, 400), held("b", 80, 250, 0)}, map[string]int{"overlap": 1}},
		{"racing extension or re-lock returned after the deadline it was made at", []Record{func() Record {
			r := follower("a", 0, 300, 0, 0)
			r.Extensions = append(r.Extensions,
				Extension{Invoke: ms(90), Return: ms(101), OK: true, Racing: true, Prev: ms(100), Deadline: ms(300)},
				Extension{Invoke: ms(90), Return: ms(101), OK: true, Relock: true, Prev: ms(100), Deadline: ms(300)})
			return r
		}()}, map[string]int{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vs := CheckExclusion(c.recs)
			got := kinds(vs)
			if len(got) != len(c.want) {
				t.Fatalf("violations %v, want %v", vs, c.want)
			}
			for k, n := range c.want {
				if got[k] != n {
					t.Fatalf("violations %v, want %v", vs, c.want)
				}
			}
		})
	}
}

func TestCheckFencing(t *testing.T) {
	fenced := func(w string, ret, dl int64, f uint64) Record {
		r := held(w, ret, dl, 0)
		r.Fence = &f
		return r
	}
	if _, ran := CheckFencing([]Record{held("a", 0, 100, 0)}); ran {
		t.Fatal("CheckFencing ran on a history without tokens")
	}
	cases := []struct {
		name string
		recs []Record
		want map[string]int
	}{
		{"increasing", []Record{fenced("a", 0, 100, 1), fenced("b", 100, 200, 2), fenced("c", 200, 300, 7)}, map[string]int{}},
		{"duplicate", []Record{fenced("a", 0, 100, 3), fenced("b", 100, 200, 3)}, map[string]int{"fence-duplicate": 1, "fence-order": 1}},
		{"decreasing", []Record{fenced("a", 0, 100, 5), fenced("b", 100, 200, 4)}, map[string]int{"fence-order": 1}},
		{"missing", []Record{fenced("a", 0, 100, 5), held("b", 100, 200, 0)}, map[string]int{"fence-missing": 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vs, ran := CheckFencing(c.recs)
			if !ran {
				t.Fatal("did not run")
			}
			got := kinds(vs)
			if len(got) != len(c.want) {
				t.Fatalf("violations %v, want %v", vs, c.want)
			}
			for k, n := range c.want {
				if got[k] != n {
					t.Fatalf("violations %v, want %v", vs, c.want)
				}
			}
		})
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	fence := uint64(9)
	in := []Record{held("a", 0, 100, 50), {Worker: "b", Resource: "r\x00\n", Err: "unavailable", Fence: &fence, Follow: true,
		Extensions: []Extension{{Invoke: 1, Return: 2, OK: true, Prev: 3, Deadline: 4, Racing: true, Relock: true, TTL: 5}}}}
	path := t.TempDir() + "/h.jsonl"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{sink: f}
	for _, r := range in {
		rec.Add(r)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := ReadRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || out[1].Resource != in[1].Resource || *out[1].Fence != 9 || !out[1].Follow || out[1].Extensions[0] != in[1].Extensions[0] || out[0].Release != in[0].Release {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}

func TestMonoOf(t *testing.T) {
	// MonoOf(now + d) lands d after Mono(), within the time the calls take.
	for _, d := range []time.Duration{0, time.Second, -time.Second} {
		before := Mono()
		got := MonoOf(time.Now().Add(d))
		after := Mono()
		if got < before+int64(d) || got > after+int64(d) {
			t.Fatalf("MonoOf(now%+v) = %d, want within [%d, %d]", d, got, before+int64(d), after+int64(d))
		}
	}
}
