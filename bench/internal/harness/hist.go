package harness

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram: exact below 128ns, then 64
// sub-buckets per power of two (under 1.6% error). Recording never
// allocates, so it does not disturb the allocation counts.
type hist struct {
	counts [histBuckets]uint64
	total  uint64
	max    time.Duration
}

const (
	histSub     = 64
	histExact   = 2 * histSub
	histBuckets = histExact + 57*histSub
)

func histIndex(v uint64) int {
	if v < histExact {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // ≥ 1; v>>shift is in [64, 128)
	return histExact + (shift-1)*histSub + int(v>>uint(shift)) - histSub
}

// histValue is the middle of bucket i.
func histValue(i int) uint64 {
	if i < histExact {
		return uint64(i)
	}
	shift := uint((i-histExact)/histSub + 1)
	top := uint64((i-histExact)%histSub + histSub)
	return top<<shift + 1<<(shift-1)
}

func (h *hist) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[histIndex(uint64(d))]++
	h.total++
	if d > h.max {
		h.max = d
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1), or 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.999999)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(histValue(i)), h.max)
		}
	}
	return h.max
}
