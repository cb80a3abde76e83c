// Market list: tickers and halts live over the websocket (REST polling when it cannot be had),
// search and favourites.
(function () {
  "use strict";
  const E = window.Exchange;
  const table = document.getElementById("markets");
  if (!table) return;
  const rows = {};
  for (const row of table.querySelectorAll("tr[data-market]")) rows[row.dataset.market] = row;

  function fixedVol(row, v) {
    const vol = row.querySelector('[data-k="vol"]');
    if (vol && v !== undefined) vol.firstChild.textContent = E.fixed(v, Number(row.dataset.vp)) + " ";
  }
  function onTicker(x) {
    const row = rows[x.market];
    if (!row) return;
    E.paintTicker(row, x);
    const pp = Number(row.dataset.pp);
    for (const k of ["high", "low"]) {
      const el = row.querySelector(`[data-k="${k}"]`);
      if (el && parseFloat(x[k]) > 0) el.textContent = E.fixed(x[k], pp);
    }
    fixedVol(row, x.vol);
  }

  const socket = E.follow(Object.keys(rows), ["ticker", "status"], (kind, body) => {
    if (kind === "ticker") onTicker(body);
    else if (kind === "status" && rows[body.market]) E.paintStatus(rows[body.market], body);
  });
  if (!socket) {
    setInterval(async () => {
      let data;
      try { data = await E.getJSON("/api/v2/tickers"); } catch (e) { return; }
      for (const id of Object.keys(rows)) if (data[id] && data[id].ticker) onTicker({ ...data[id].ticker, market: id });
    }, 5000);
  }

  // search and favourites
  const search = document.getElementById("market-search");
  const empty = document.getElementById("markets-empty");
  let favOnly = false;
  const apply = () => { empty.hidden = E.filterMarkets(table, search, favOnly) > 0; };
  search.addEventListener("input", apply);
  for (const b of document.querySelectorAll("[data-filter]")) {
    b.addEventListener("click", () => {
      favOnly = b.dataset.filter === "fav";
      for (const o of document.querySelectorAll("[data-filter]")) {
        o.classList.toggle("active", o === b);
        o.setAttribute("aria-pressed", o === b ? "true" : "false");
      }
      apply();
    });
  }
  document.addEventListener("favourites", apply);
})();
