package redlock

import "reflect"

// isNilPointer reports whether v is an interface holding a nil pointer (or
// map, chan, func, slice), which would panic on first use.
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// comparableSeen records c at index i in seen and reports an earlier index
// holding the same client. Clients of non-comparable types are never
// reported as duplicates.
func comparableSeen(seen map[Client]int, c Client, i int) (int, bool) {
	if !reflect.TypeOf(c).Comparable() {
		return 0, false
	}
	if j, ok := seen[c]; ok {
		return j, true
	}
	seen[c] = i
	return 0, false
}
