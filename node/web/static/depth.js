// The depth chart: cumulative bids (left, rising toward the mid price) and asks (right), drawn on a
// canvas from the book the market page already holds. For the eye only (floats); money never goes
// through this file.
(function () {
  "use strict";
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  class DepthChart {
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.pp = opts.pricePrecision;
      this.vp = opts.volumePrecision;
      this.book = { asks: [], bids: [] };
      this.hover = null;
      canvas.addEventListener("mousemove", (e) => { const r = canvas.getBoundingClientRect(); this.hover = e.clientX - r.left; this.draw(); });
      canvas.addEventListener("mouseleave", () => { this.hover = null; this.draw(); });
      new ResizeObserver(() => this.draw()).observe(canvas);
    }
    /** asks and bids best first, [priceStr, volumeStr] */
    setBook(book) { this.book = book; if (!this.canvas.hidden) this.draw(); }
    draw() {
      const c = this.canvas, dpr = window.devicePixelRatio || 1;
      const w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) return;
      c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
      const g = c.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      const cum = (levels) => { let s = 0; return levels.map(([p, v]) => [parseFloat(p), (s += parseFloat(v))]); };
      const bids = cum(this.book.bids.slice(0, 200)), asks = cum(this.book.asks.slice(0, 200));
      g.font = "11px system-ui, sans-serif";
      g.fillStyle = css("--muted") || "#8592a6";
      if (!bids.length && !asks.length) { g.fillText("—", w / 2, h / 2); return; }
      const lo = bids.length ? bids[bids.length - 1][0] : asks[0][0];
      const hi = asks.length ? asks[asks.length - 1][0] : bids[0][0];
      const mid = bids.length && asks.length ? (bids[0][0] + asks[0][0]) / 2 : (lo + hi) / 2;
      const span = Math.max(mid - lo, hi - mid) || mid * 0.01 || 1;
      const maxV = Math.max(bids.length ? bids[bids.length - 1][1] : 0, asks.length ? asks[asks.length - 1][1] : 0) || 1;
      const L = 8, R = 64, T = 10, B = 22;
      const x = (p) => L + (p - (mid - span)) / (2 * span) * (w - L - R);
      const y = (v) => h - B - v / maxV * (h - T - B);
      const area = (pts, line, fill, dir) => {
        if (!pts.length) return;
        g.beginPath();
        g.moveTo(x(pts[0][0]), h - B);
        for (const [p, v] of pts) { g.lineTo(x(p), y(v)); }
        g.lineTo(dir < 0 ? L : w - R, y(pts[pts.length - 1][1]));
        g.lineTo(dir < 0 ? L : w - R, h - B);
        g.closePath();
        g.fillStyle = fill; g.fill();
        g.strokeStyle = line; g.lineWidth = 1.5; g.stroke();
      };
      const stairs = (pts) => { const out = []; let prev = 0; for (const [p, v] of pts) { out.push([p, prev], [p, v]); prev = v; } return out; };
      area(stairs(bids), css("--buy"), css("--buy-bg"), -1);
      area(stairs(asks), css("--sell"), css("--sell-bg"), 1);
      g.fillStyle = css("--muted");
      for (let i = 0; i <= 4; i++) {
        const p = mid - span + i * span / 2;
        g.textAlign = i === 0 ? "left" : i === 4 ? "right" : "center";
        g.fillText(p.toFixed(this.pp), Math.min(Math.max(x(p), L), w - R), h - 6);
      }
      g.textAlign = "left";
      for (let i = 1; i <= 3; i++) g.fillText((maxV * i / 4).toFixed(Math.min(this.vp, 4)), w - R + 6, y(maxV * i / 4) + 4);
      if (this.hover !== null && this.hover > L && this.hover < w - R) {
        const p = mid - span + (this.hover - L) / (w - L - R) * 2 * span;
        const side = p < mid ? bids : asks;
        let v = 0;
        for (const [lp, lv] of side) { if (p < mid ? lp >= p : lp <= p) v = lv; }
        g.strokeStyle = css("--muted"); g.setLineDash([3, 3]);
        g.beginPath(); g.moveTo(this.hover, T); g.lineTo(this.hover, h - B); g.stroke(); g.setLineDash([]);
        g.fillStyle = css("--text");
        g.fillText(`${p.toFixed(this.pp)} · Σ ${v.toFixed(this.vp)}`, Math.min(this.hover + 6, w - R - 120), T + 12);
      }
    }
  }
  window.DepthChart = DepthChart;
})();
