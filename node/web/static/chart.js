// A candlestick chart drawn on a canvas: candles, volume, price and time axes, the last price, a
// crosshair with the candle's open/high/low/close/volume. Written here, no chart library, no CDN.
// Numbers on the chart are for the eye only (floats); money never goes through this file.
(function () {
  "use strict";

  const COLORS = {
    bg: "#121a25", grid: "rgba(133,146,166,0.10)", axis: "#8592a6", text: "#c9d2de",
    up: "#16c784", down: "#f0475a", upVol: "rgba(22,199,132,0.28)", downVol: "rgba(240,71,90,0.28)",
    cross: "rgba(201,210,222,0.45)", label: "#2a3a4f",
  };
  const AXIS_W = 76;
  const TIME_H = 24;
  const pad = (n) => String(n).padStart(2, "0");

  class CandleChart {
    /**
     * @param {HTMLCanvasElement} canvas
     * @param {{pricePrecision:number, volumePrecision:number, t:(s:string)=>string}} opts
     */
    constructor(canvas, opts) {
      this.canvas = canvas;
      this.ctx = canvas.getContext("2d");
      this.pp = opts.pricePrecision;
      this.vp = opts.volumePrecision;
      this.t = opts.t || ((s) => s);
      this.data = [];
      this.period = 15;
      this.hover = null;
      this.layout = null;
      const redraw = () => this.resize();
      if (window.ResizeObserver) new ResizeObserver(redraw).observe(canvas.parentElement);
      else window.addEventListener("resize", redraw);
      const move = (x, y) => { this.hover = { x, y }; this.draw(); };
      canvas.addEventListener("mousemove", (e) => {
        const r = canvas.getBoundingClientRect();
        move(e.clientX - r.left, e.clientY - r.top);
      });
      canvas.addEventListener("touchmove", (e) => {
        const r = canvas.getBoundingClientRect();
        const p = e.touches[0];
        move(p.clientX - r.left, p.clientY - r.top);
      }, { passive: true });
      const leave = () => { this.hover = null; this.draw(); };
      canvas.addEventListener("mouseleave", leave);
      canvas.addEventListener("touchend", leave);
      this.resize();
    }

    /** candles: [{t: epoch seconds, o, h, l, c, v}] oldest first; period in minutes. */
    setData(candles, period) {
      this.data = candles;
      if (period) this.period = period;
      this.draw();
    }

    resize() {
      const dpr = window.devicePixelRatio || 1;
      const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
      if (!w || !h) return;
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
      this.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      this.draw();
    }

    fmtPrice(v) { return v.toFixed(Math.min(this.pp, 8)); }

    fmtVol(v) {
      if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
      if (v >= 1e3) return (v / 1e3).toFixed(2) + "K";
      return v.toFixed(Math.min(this.vp, 4));
    }

    fmtTime(sec, full) {
      const d = new Date(sec * 1000);
      const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
      const md = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      if (full) return `${d.getFullYear()}-${md} ${hm}`;
      return this.period >= 1440 ? md : hm;
    }

    draw() {
      const ctx = this.ctx;
      const W = this.canvas.clientWidth, H = this.canvas.clientHeight;
      if (!W || !H) return;
      ctx.fillStyle = COLORS.bg;
      ctx.fillRect(0, 0, W, H);
      ctx.font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
      ctx.textBaseline = "middle";
      const plotW = W - AXIS_W, plotH = H - TIME_H;
      const volH = Math.round(plotH * 0.2);
      const priceH = plotH - volH - 8;
      const top = 28;

      if (!this.data.length) {
        this.drawGrid(plotW, plotH, top, priceH);
        ctx.fillStyle = COLORS.axis;
        ctx.textAlign = "center";
        ctx.fillText(this.t("No trades in this period yet"), plotW / 2, plotH / 2);
        return;
      }
      const step = W < 500 ? 7 : 9;
      const count = Math.max(10, Math.floor((plotW - 10) / step));
      const shown = this.data.slice(-count);
      const x0 = plotW - 6 - shown.length * step;
      let lo = Infinity, hi = -Infinity, vmax = 0;
      for (const c of shown) { lo = Math.min(lo, c.l); hi = Math.max(hi, c.h); vmax = Math.max(vmax, c.v); }
      if (hi === lo) { hi += hi * 0.01 || 1; lo -= lo * 0.01 || 1; }
      const span = hi - lo;
      hi += span * 0.08; lo -= span * 0.08;
      const y = (p) => top + (hi - p) / (hi - lo) * (priceH - top);
      const volTop = plotH - volH;
      const vy = (v) => plotH - (vmax ? v / vmax * (volH - 4) : 0);
      this.layout = { x0, step, shown, y, lo, hi, top, priceH };

      this.drawGrid(plotW, plotH, top, priceH);
      // price axis labels
      ctx.fillStyle = COLORS.axis;
      ctx.textAlign = "left";
      for (let i = 0; i <= 4; i++) {
        const p = hi - (hi - lo) * i / 4;
        ctx.fillText(this.fmtPrice(p), plotW + 8, y(p));
      }
      // time labels every ~90 px
      const every = Math.max(1, Math.round(90 / step));
      ctx.textAlign = "center";
      for (let i = shown.length - 1; i >= 0; i -= every) {
        const cx = x0 + i * step + step / 2;
        if (cx < 30) break;
        ctx.fillText(this.fmtTime(shown[i].t), cx, plotH + TIME_H / 2);
      }
      // volume, then candles
      const body = Math.max(1, step - 3);
      shown.forEach((c, i) => {
        const up = c.c >= c.o;
        const cx = Math.round(x0 + i * step + step / 2) + 0.5;
        ctx.fillStyle = up ? COLORS.upVol : COLORS.downVol;
        const top2 = vy(c.v);
        ctx.fillRect(cx - body / 2, top2, body, plotH - top2);
        ctx.strokeStyle = up ? COLORS.up : COLORS.down;
        ctx.fillStyle = ctx.strokeStyle;
        ctx.beginPath();
        ctx.moveTo(cx, y(c.h));
        ctx.lineTo(cx, y(c.l));
        ctx.stroke();
        const yo = y(c.o), yc = y(c.c);
        ctx.fillRect(cx - body / 2, Math.min(yo, yc), body, Math.max(1, Math.abs(yc - yo)));
      });
      ctx.strokeStyle = COLORS.grid;
      ctx.beginPath();
      ctx.moveTo(0, volTop - 4.5);
      ctx.lineTo(plotW, volTop - 4.5);
      ctx.stroke();
      // last price line
      const last = shown[shown.length - 1];
      const ly = Math.round(y(last.c)) + 0.5;
      const lastColor = last.c >= last.o ? COLORS.up : COLORS.down;
      ctx.setLineDash([3, 3]);
      ctx.strokeStyle = lastColor;
      ctx.beginPath();
      ctx.moveTo(0, ly);
      ctx.lineTo(plotW, ly);
      ctx.stroke();
      ctx.setLineDash([]);
      this.tag(plotW, ly, this.fmtPrice(last.c), lastColor, "#fff");

      // crosshair and legend
      let focus = last;
      if (this.hover && this.hover.x < plotW && this.hover.y < plotH) {
        const i = Math.floor((this.hover.x - x0) / step);
        if (i >= 0 && i < shown.length) focus = shown[i];
        ctx.strokeStyle = COLORS.cross;
        ctx.setLineDash([4, 4]);
        ctx.beginPath();
        const hx = Math.round(this.hover.x) + 0.5, hy = Math.round(this.hover.y) + 0.5;
        ctx.moveTo(hx, 0); ctx.lineTo(hx, plotH);
        ctx.moveTo(0, hy); ctx.lineTo(plotW, hy);
        ctx.stroke();
        ctx.setLineDash([]);
        if (hy >= top && hy <= priceH) {
          const p = hi - (hy - top) / (priceH - top) * (hi - lo);
          this.tag(plotW, hy, this.fmtPrice(p), COLORS.label, COLORS.text);
        }
      }
      this.legend(focus);
    }

    drawGrid(plotW, plotH, top, priceH) {
      const ctx = this.ctx;
      ctx.strokeStyle = COLORS.grid;
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let i = 0; i <= 4; i++) {
        const gy = Math.round(top + (priceH - top) * i / 4) + 0.5;
        ctx.moveTo(0, gy);
        ctx.lineTo(plotW, gy);
      }
      for (let gx = plotW - 90; gx > 0; gx -= 90) {
        ctx.moveTo(Math.round(gx) + 0.5, 0);
        ctx.lineTo(Math.round(gx) + 0.5, plotH);
      }
      ctx.moveTo(plotW + 0.5, 0);
      ctx.lineTo(plotW + 0.5, plotH);
      ctx.moveTo(0, plotH + 0.5);
      ctx.lineTo(plotW, plotH + 0.5);
      ctx.stroke();
    }

    tag(x, y, text, bg, fg) {
      const ctx = this.ctx;
      ctx.fillStyle = bg;
      ctx.fillRect(x + 1, y - 9, AXIS_W - 2, 18);
      ctx.fillStyle = fg;
      ctx.textAlign = "left";
      ctx.fillText(text, x + 8, y);
    }

    legend(c) {
      const ctx = this.ctx;
      const t = this.t;
      const parts = [
        [this.fmtTime(c.t, true), COLORS.axis],
        [`${t("Open")} ${this.fmtPrice(c.o)}`, COLORS.text], [`${t("High")} ${this.fmtPrice(c.h)}`, COLORS.text],
        [`${t("Low")} ${this.fmtPrice(c.l)}`, COLORS.text], [`${t("Close")} ${this.fmtPrice(c.c)}`, c.c >= c.o ? COLORS.up : COLORS.down],
        [`${t("Volume")} ${this.fmtVol(c.v)}`, COLORS.axis],
      ];
      ctx.textAlign = "left";
      let x = 10;
      const maxX = this.canvas.clientWidth - AXIS_W;
      let y = 14;
      for (const [text, color] of parts) {
        const w = ctx.measureText(text).width;
        if (x + w > maxX) { x = 10; y += 15; }
        ctx.fillStyle = color;
        ctx.fillText(text, x, y);
        x += w + 12;
      }
    }
  }

  /** Candles from a list of trades ({price, volume, created_at}), for when no k-line service answers. */
  CandleChart.fromTrades = function (trades, period) {
    const size = period * 60;
    const buckets = new Map();
    const sorted = trades.slice().sort((a, b) => a.t - b.t);
    for (const tr of sorted) {
      const k = Math.floor(tr.t / size) * size;
      const c = buckets.get(k);
      if (!c) buckets.set(k, { t: k, o: tr.p, h: tr.p, l: tr.p, c: tr.p, v: tr.v });
      else { c.h = Math.max(c.h, tr.p); c.l = Math.min(c.l, tr.p); c.c = tr.p; c.v += tr.v; }
    }
    return Array.from(buckets.values()).sort((a, b) => a.t - b.t);
  };

  /** Fold one new trade into candles (the last one, or a new one). */
  CandleChart.fold = function (candles, tr, period) {
    const size = period * 60;
    const k = Math.floor(tr.t / size) * size;
    const last = candles[candles.length - 1];
    if (last && last.t === k) {
      last.h = Math.max(last.h, tr.p); last.l = Math.min(last.l, tr.p); last.c = tr.p; last.v += tr.v;
    } else if (!last || k > last.t) {
      candles.push({ t: k, o: tr.p, h: tr.p, l: tr.p, c: tr.p, v: tr.v });
    }
  };

  window.CandleChart = CandleChart;
})();
