// Keeps the market page live by polling the public API (the websocket stream replaces this later).
(function () {
  "use strict";
  const root = document.getElementById("market");
  if (!root) return;
  const market = root.dataset.market;

  function rows(tbody, items, cls, cells) {
    const frag = document.createDocumentFragment();
    for (const item of items) {
      const tr = document.createElement("tr");
      tr.className = cls(item);
      for (const c of cells(item)) {
        const td = document.createElement("td");
        td.textContent = c.text;
        if (c.cls) td.className = c.cls;
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString();
  }

  async function refresh() {
    try {
      const [depth, trades] = await Promise.all([
        fetch(`/api/v2/depth?market=${market}&limit=20`).then((r) => r.json()),
        fetch(`/api/v2/trades?market=${market}&limit=30`).then((r) => r.json()),
      ]);
      rows(document.getElementById("asks"), depth.asks.slice(-20), () => "sell",
        (l) => [{ text: l[0], cls: "num" }, { text: l[1], cls: "num" }]);
      rows(document.getElementById("bids"), depth.bids, () => "buy",
        (l) => [{ text: l[0], cls: "num" }, { text: l[1], cls: "num" }]);
      const bestAsk = depth.asks.length ? depth.asks[depth.asks.length - 1][0] : null;
      const bestBid = depth.bids.length ? depth.bids[0][0] : null;
      document.getElementById("spread").textContent =
        bestAsk && bestBid ? `spread ${(parseFloat(bestAsk) - parseFloat(bestBid)).toPrecision(4)}` : "\u00a0";
      rows(document.getElementById("trades"), trades, () => "",
        (t) => [{ text: t.price, cls: "num" }, { text: t.volume, cls: "num" },
          { text: fmtTime(Date.parse(t.created_at)), cls: "time" }]);
    } catch (e) {
      // network hiccup: try again on the next tick
    }
  }

  for (const td of document.querySelectorAll("td.time[data-ms]")) td.textContent = fmtTime(Number(td.dataset.ms));
  refresh();
  setInterval(refresh, 1000);
})();
