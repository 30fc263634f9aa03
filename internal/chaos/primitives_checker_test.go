package chaos

import (
	"reflect"
	"testing"
)

// h is a holding of worker w from start to end (ms) with term.
func h(w string, start, end int64, term uint64) Holding {
	return Holding{Worker: w, Slot: "s", Start: ms(start), End: ms(end), Term: term}
}

func TestCheckPermits(t *testing.T) {
	cases := []struct {
		name    string
		hs      []Holding
		permits int
		want    map[string]int
	}{
		{"none", nil, 1, map[string]int{}},
		{"two of two", []Holding{h("a", 0, 100, 0), h("b", 10, 90, 0)}, 2, map[string]int{}},
		{"three of two", []Holding{h("a", 0, 100, 0), h("b", 10, 90, 0), h("c", 50, 60, 0)}, 2, map[string]int{"over-permits": 1}},
		{"end meets start", []Holding{h("a", 0, 100, 0), h("b", 0, 50, 0), h("c", 50, 60, 0), h("d", 100, 200, 0)}, 2, map[string]int{}},
		{"two episodes", []Holding{h("a", 0, 100, 0), h("b", 0, 100, 0), h("c", 10, 20, 0), h("d", 30, 40, 0)}, 2, map[string]int{"over-permits": 2}},
		{"one episode, several excess", []Holding{h("a", 0, 100, 0), h("b", 0, 100, 0), h("c", 10, 50, 0), h("d", 20, 40, 0)}, 2, map[string]int{"over-permits": 1}},
		{"empty windows do not count", []Holding{h("a", 0, 100, 0), h("b", 10, 10, 0), h("c", 20, 5, 0)}, 1, map[string]int{}},
		{"one permit overlap", []Holding{h("a", 0, 100, 0), h("b", 99, 150, 0)}, 1, map[string]int{"over-permits": 1}},
	}
	for _, c := range cases {
		if got := kinds(CheckPermits(c.hs, c.permits)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestCheckLeaders(t *testing.T) {
	cases := []struct {
		name string
		hs   []Holding
		want map[string]int
	}{
		{"none", nil, map[string]int{}},
		{"in turn", []Holding{h("a", 0, 100, 1), h("b", 100, 200, 2), h("c", 250, 300, 7)}, map[string]int{}},
		{"out of order input", []Holding{h("c", 250, 300, 7), h("a", 0, 100, 1), h("b", 100, 200, 2)}, map[string]int{}},
		{"overlap", []Holding{h("a", 0, 100, 1), h("b", 99, 200, 2)}, map[string]int{"leader-overlap": 1}},
		{"nested in a long one", []Holding{h("a", 0, 1000, 1), h("b", 100, 200, 2), h("c", 300, 400, 3)}, map[string]int{"leader-overlap": 2}},
		{"same term", []Holding{h("a", 0, 100, 1), h("b", 100, 200, 1)}, map[string]int{"term-order": 1}},
		{"lower term", []Holding{h("a", 0, 100, 5), h("b", 100, 200, 4)}, map[string]int{"term-order": 1}},
		{"empty window left out", []Holding{h("a", 0, 100, 5), h("b", 150, 150, 1), h("c", 200, 300, 6)}, map[string]int{}},
	}
	for _, c := range cases {
		if got := kinds(CheckLeaders(c.hs)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
