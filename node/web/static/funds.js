// Funds page: balances refresh themselves, so a deposit or a trade shows up without a reload.
(function () {
  "use strict";
  const table = document.getElementById("balances");
  if (!table) return;
  async function refresh() {
    let rows;
    try { rows = await window.Exchange.getJSON("/funds/balances.json"); } catch (e) { return; }
    for (const b of rows) {
      const tr = table.querySelector(`tr[data-currency="${b.code}"]`);
      if (!tr) continue;
      for (const k of ["available", "locked", "total"]) {
        const td = tr.querySelector(`[data-k="${k}"]`);
        if (td && td.textContent !== b[k]) td.textContent = b[k];
      }
    }
  }
  setInterval(refresh, 3000);
})();
