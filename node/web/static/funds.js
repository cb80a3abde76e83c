// Funds page: balances follow the member's socket, so a deposit or a trade shows up without a reload.
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
  // Pushed over the member's socket (app.js): balances after each change, and a notice (deposit
  // credited, withdrawal moved on) refreshes them too; polled only while that socket is down.
  const member = window.Exchange.memberFeed;
  let soon = null;  // one read for a burst of frames (a subscription sends every currency's)
  const later = () => { if (soon === null) soon = setTimeout(() => { soon = null; refresh(); }, 150); };
  if (member) {
    member.want(["account"]);
    member.on((kind) => { if (kind === "account" || kind === "up") later(); });
    document.addEventListener("notice", later);
  }
  setInterval(() => { if (!member || !member.up) refresh(); }, 3000);
})();
