package harness

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// chartColors gives each implementation a fixed colour.
var chartColors = map[string]string{
	"redlock":         "#d62728",
	"redlock-goredis": "#ff7f0e",
	"redsync":         "#1f77b4",
	"redislock":       "#9467bd",
	"rueidislock":     "#e377c2",
	"node-redlock":    "#8c564b",
	"goredis-floor":   "#7f7f7f",
	"rueidis-floor":   "#2ca02c",
}

// Chart geometry, in SVG user units.
const (
	chartW      = 760
	panelH      = 300
	marginL     = 70
	marginR     = 210 // legend
	marginT     = 40
	marginB     = 50
	chartTitleH = 44
)

// WriteSVG draws ops/s by caller count per implementation (uncontended
// workloads), one panel per N.
func (r *Report) WriteSVG(w io.Writer) error {
	var b strings.Builder
	ns := r.Opts.Ns
	height := chartTitleH + len(ns)*(panelH+marginT+marginB)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartW, height, chartW, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartW, height)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">Lock+unlock cycles/s by concurrent callers</text>`+"\n", marginL)
	fmt.Fprintf(&b, `<text x="%d" y="38" fill="#555">%s</text>`+"\n", marginL,
		xmlEscape(fmt.Sprintf("GOMAXPROCS=%d, %d CPUs, redis-server %s on loopback, medians of %d round(s) of %s cells, %s",
			r.GOMAXPROCS, r.NumCPU, r.RedisVersion, r.Opts.Rounds, r.Opts.Cell, r.Started.UTC().Format("2006-01-02"))))
	for pi, n := range ns {
		top := chartTitleH + pi*(panelH+marginT+marginB) + marginT
		r.panel(&b, n, top)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) panel(b *strings.Builder, n, top int) {
	cs := r.Opts.Cs
	plotW := chartW - marginL - marginR
	bottom := top + panelH
	var ymax float64
	for _, row := range r.Rows {
		if row.N == n && !row.Workload.Contended && row.Workload.Handoff == "" {
			ymax = max(ymax, row.Median.OpsPerSec)
		}
	}
	ymax = niceCeil(ymax * 1.05)
	x := func(i int) float64 {
		if len(cs) == 1 {
			return float64(marginL) + float64(plotW)/2
		}
		return float64(marginL) + float64(i)*float64(plotW)/float64(len(cs)-1)
	}
	y := func(v float64) float64 { return float64(bottom) - v/ymax*float64(panelH) }

	fmt.Fprintf(b, `<text x="%d" y="%d" font-size="13" font-weight="bold">N=%d instances</text>`+"\n", marginL, top-10, n)
	for k := 0; k <= 5; k++ {
		v := ymax * float64(k) / 5
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", marginL, y(v), marginL+plotW, y(v))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", marginL-6, y(v)+4, fmtInt(v))
	}
	for i, c := range cs {
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(i), bottom+18, c)
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">concurrent callers, each on its own resource</text>`+"\n", marginL+plotW/2, bottom+38)
	fmt.Fprintf(b, `<text transform="translate(16 %d) rotate(-90)" text-anchor="middle">ops/s</text>`+"\n", top+panelH/2)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, bottom, marginL+plotW, bottom)
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", marginL, top, marginL, bottom)

	ly := top + 10
	for _, im := range r.implsAt(n) {
		color := chartColors[im.Key]
		if color == "" {
			color = "black"
		}
		var pts []string
		for i, c := range cs {
			if row := r.Row(n, Workload{C: c}, im.Key); row != nil {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(row.Median.OpsPerSec)))
			}
		}
		if len(pts) == 0 {
			continue
		}
		dash := ""
		if im.Floor {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), color, dash)
		for _, p := range pts {
			xy := strings.SplitN(p, ",", 2)
			fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="3.5" fill="%s"/>`+"\n", xy[0], xy[1], color)
		}
		lx := marginL + plotW + 16
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", lx, ly, lx+24, ly, color, dash)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", lx+30, ly+4, xmlEscape(im.Label))
		ly += 20
	}
}

// niceCeil rounds v up to a round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8
// times a power of ten).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
