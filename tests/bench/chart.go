package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"strings"
)

var (
	white  = color.RGBA{255, 255, 255, 255}
	black  = color.RGBA{40, 40, 40, 255}
	grey   = color.RGBA{170, 170, 170, 255}
	blue   = color.RGBA{52, 101, 164, 255}
	orange = color.RGBA{230, 130, 30, 255}
	green  = color.RGBA{60, 150, 60, 255}
)

// canvas is a paletted image with the few drawing operations a bar chart
// needs; paletted keeps the PNG a few kilobytes.
type canvas struct{ img *image.Paletted }

func newCanvas(w, h int) *canvas {
	c := &canvas{image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{white, black, grey, blue, orange, green})}
	return c
}

func (c *canvas) rect(x0, y0, x1, y1 int, col color.Color) {
	for y := min(y0, y1); y < max(y0, y1); y++ {
		for x := min(x0, x1); x < max(x0, x1); x++ {
			c.img.Set(x, y, col)
		}
	}
}

// text draws s with its top-left corner at x, y, each font pixel scale
// pixels wide; it returns the width drawn.
func (c *canvas) text(x, y int, s string, scale int, col color.Color) int {
	s = strings.ToUpper(s)
	for i, r := range s {
		g := glyphs[r]
		for row := range 7 {
			for bit := range 5 {
				if g[row]&(1<<(4-bit)) != 0 {
					px := x + (i*6+bit)*scale
					c.rect(px, y+row*scale, px+scale, y+(row+1)*scale, col)
				}
			}
		}
	}
	return len(s) * 6 * scale
}

func textWidth(s string, scale int) int { return len(s) * 6 * scale }

// writeChart draws, per pool, each setup's throughput and p99 ratio to
// plain reverse_proxy (medians), with the targets as lines.
func (r *report) writeChart(path string) error {
	const (
		w, panelH, top, left = 900, 260, 60, 50
		maxRatio             = 2.0
	)
	h := top + panelH*len(r.opts.pools) + 20
	c := newCanvas(w, h)
	c.text(left, 12, "connection_gate vs plain reverse_proxy: ratios (medians)", 2, black)
	lx := left
	for _, l := range []struct {
		name string
		col  color.Color
	}{{"req/s ratio (target >= 0.98)", blue}, {"p99 ratio (target <= 1.10)", orange}} {
		c.rect(lx, 36, lx+14, 46, l.col)
		lx += 20 + c.text(lx+20, 37, l.name, 1, black) + 30
	}
	for pi, pool := range r.opts.pools {
		y0 := top + pi*panelH
		base := y0 + panelH - 40 // the bars' baseline
		scale := float64(panelH-70) / maxRatio
		yOf := func(v float64) int { return base - int(min(v, maxRatio)*scale) }
		c.text(left, y0+4, fmt.Sprintf("%d distinct tokens", pool), 2, black)
		c.rect(left, base, w-20, base+1, black)
		for _, ref := range []struct {
			v   float64
			col color.Color
		}{{1, grey}, {0.98, blue}, {1.10, orange}} {
			y := yOf(ref.v)
			for x := left; x < w-20; x += 6 {
				c.rect(x, y, x+3, y+1, ref.col)
			}
		}
		c.text(8, yOf(1)-3, "1.0", 1, black)
		c.text(8, yOf(2)-3, "2.0", 1, black)
		slot := (w - 20 - left) / len(r.setups)
		for si, s := range r.setups {
			m := r.summarize(s, pool)
			x := left + si*slot + slot/2 - 50
			for bi, bar := range []struct {
				v   float64
				col color.Color
			}{{m.ratio, blue}, {m.p99Ratio, orange}} {
				bx := x + bi*52
				c.rect(bx, yOf(bar.v), bx+44, base, bar.col)
				label := fmt.Sprintf("%.2f", bar.v)
				c.text(bx+22-textWidth(label, 1)/2, yOf(bar.v)-10, label, 1, black)
			}
			name := strings.ReplaceAll(s.name, "plain reverse_proxy", "plain")
			c.text(left+si*slot+slot/2-textWidth(name, 1)/2, base+8, name, 1, black)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(f, c.img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
