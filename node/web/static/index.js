// Market list: keeps the tickers fresh (last price, 24 h change, high, low, volume) every few seconds.
(function () {
  "use strict";
  const table = document.getElementById("markets");
  if (!table) return;

  function changeOf(open, last) {
    const o = parseFloat(open), l = parseFloat(last);
    if (!(o > 0) || !(l > 0)) return null;
    return (l - o) / o * 100;
  }

  /** A decimal string with exactly `n` decimals (the page's columns line up). */
  function fixed(s, n) {
    const [w, f = ""] = String(s).split(".");
    return n > 0 ? `${w}.${(f + "0".repeat(n)).slice(0, n)}` : w;
  }

  async function refresh() {
    let data;
    try { data = await window.Exchange.getJSON("/api/v2/tickers"); } catch (e) { return; }
    for (const row of table.querySelectorAll("tr[data-market]")) {
      const tk = data[row.dataset.market];
      if (!tk || !tk.ticker) continue;
      const x = tk.ticker;
      const pp = Number(row.dataset.pp), vp = Number(row.dataset.vp);
      const set = (k, v) => {
        const el = row.querySelector(`[data-k="${k}"]`);
        if (el && v !== undefined && parseFloat(v) > 0) el.textContent = fixed(v, pp);
      };
      set("last", x.last);
      set("high", x.high);
      set("low", x.low);
      const vol = row.querySelector('[data-k="vol"]');
      if (vol && x.vol !== undefined) vol.firstChild.textContent = fixed(x.vol, vp) + " ";
      const ch = changeOf(x.open, x.last);
      const cell = row.querySelector('[data-k="change"]');
      if (cell && ch !== null) {
        cell.textContent = (ch >= 0 ? "+" : "") + ch.toFixed(2) + "%";
        cell.classList.toggle("up", ch > 0);
        cell.classList.toggle("down", ch < 0);
      }
    }
  }
  setInterval(refresh, 5000);
})();
