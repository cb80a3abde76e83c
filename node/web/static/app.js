// Every page: translations for scripts, local times, copy buttons, confirmations, the CSRF-aware fetch.
// No inline script anywhere (CSP script-src 'self'): pages hand data over in JSON blocks.
(function () {
  "use strict";
  const block = document.getElementById("i18n");
  let messages = {};
  try { messages = block ? JSON.parse(block.textContent) : {}; } catch (e) { messages = {}; }

  /** The translation of an English text, with {name} placeholders filled in. */
  function t(text, params) {
    let s = Object.prototype.hasOwnProperty.call(messages, text) ? messages[text] : text;
    if (params) for (const k of Object.keys(params)) s = s.split("{" + k + "}").join(String(params[k]));
    return s;
  }

  const pad = (n) => String(n).padStart(2, "0");
  /** Times come from the server in UTC; members read them in their own time zone. */
  function localTime(iso, timeOnly) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (timeOnly) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }
  function localizeTimes(root) {
    for (const el of (root || document).querySelectorAll("time[data-local]")) {
      const s = localTime(el.getAttribute("datetime"), el.dataset.local === "time");
      if (s) el.textContent = s;
    }
  }

  /** POST a form with fetch; the CSRF token travels in the form body like a normal submit. */
  async function postForm(form, extra) {
    const body = new URLSearchParams(new FormData(form));
    if (extra) for (const k of Object.keys(extra)) body.set(k, extra[k]);
    const resp = await fetch(form.action, {
      method: "POST", body, credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, data };
  }

  async function getJSON(url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(`${url}: ${resp.status}`);
    return resp.json();
  }

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("[data-copy]");
    if (!btn) return;
    const src = document.querySelector(btn.dataset.copy);
    if (!src) return;
    try {
      await navigator.clipboard.writeText(src.textContent.trim());
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents(src);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      return;
    }
    const old = btn.textContent;
    btn.textContent = t("Copied");
    setTimeout(() => { btn.textContent = old; }, 1500);
  });

  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (form.dataset.confirm === "revoke" && !window.confirm(t("Revoke this API key? Programs using it stop working at once."))) {
      ev.preventDefault();
    }
  });

  // -- local settings: favourite markets, sound, theme (kept in the browser, not on the server) ------
  const store = {
    get(k, d) { try { const v = localStorage.getItem(k); return v === null ? d : JSON.parse(v); } catch (e) { return d; } },
    set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch (e) { /* private mode */ } },
  };
  const favourites = () => new Set(store.get("fav-markets", []));
  function paintFavourites() {
    const fav = favourites();
    for (const b of document.querySelectorAll("[data-fav]")) {
      const on = fav.has(b.dataset.fav);
      b.setAttribute("aria-pressed", on ? "true" : "false");
      b.classList.toggle("on", on);
    }
    document.dispatchEvent(new CustomEvent("favourites"));
  }
  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-fav]");
    if (!b) return;
    ev.preventDefault();
    const fav = favourites();
    if (fav.has(b.dataset.fav)) fav.delete(b.dataset.fav); else fav.add(b.dataset.fav);
    store.set("fav-markets", Array.from(fav));
    paintFavourites();
  });

  /** Show only the rows (`[data-market]`) of `list` whose name matches the search box (and favourites). */
  function filterMarkets(list, input, favOnly) {
    const q = (input && input.value || "").trim().toUpperCase().replace(/[^A-Z0-9]/g, "");
    const fav = favourites();
    let shown = 0;
    for (const row of list.querySelectorAll("[data-market]")) {
      const name = (row.dataset.name || row.dataset.market).toUpperCase().replace(/[^A-Z0-9]/g, "");
      const ok = (!q || name.includes(q)) && (!favOnly || fav.has(row.dataset.market));
      row.hidden = !ok;
      if (ok) shown++;
    }
    return shown;
  }

  // -- toasts and their sound ----------------------------------------------------------------------------
  let toasts = null;
  function toast(text, kind) {
    if (!toasts) {
      toasts = document.createElement("div");
      toasts.className = "toasts";
      toasts.id = "toasts";
      toasts.setAttribute("role", "status");
      toasts.setAttribute("aria-live", "polite");
      document.body.appendChild(toasts);
    }
    const el = document.createElement("div");
    el.className = "toast " + (kind || "info");
    el.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "toast-close";
    close.setAttribute("aria-label", t("Close"));
    close.textContent = "×";
    close.addEventListener("click", () => el.remove());
    el.appendChild(close);
    toasts.appendChild(el);
    while (toasts.children.length > 5) toasts.removeChild(toasts.firstChild);
    setTimeout(() => el.remove(), 8000);
    if (store.get("sound", false)) beep(kind);
  }
  let audio = null;
  function beep(kind) {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = kind === "bad" ? 330 : 880;
      g.gain.setValueAtTime(0.08, audio.currentTime);
      g.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
      o.connect(g).connect(audio.destination);
      o.start();
      o.stop(audio.currentTime + 0.25);
    } catch (e) { /* no audio here */ }
  }

  function paintSettings() {
    const theme = store.get("theme", "dark");
    document.documentElement.dataset.theme = theme;
    const tb = document.getElementById("theme-toggle");
    if (tb) {
      tb.setAttribute("aria-pressed", theme === "light" ? "true" : "false");
      tb.title = theme === "light" ? t("Dark theme") : t("Light theme");
    }
    const sb = document.getElementById("sound-toggle");
    if (sb) {
      const on = store.get("sound", false);
      sb.setAttribute("aria-pressed", on ? "true" : "false");
      sb.title = on ? t("Sound on") : t("Sound off");
      sb.classList.toggle("on", on);
    }
  }
  document.addEventListener("click", (ev) => {
    if (ev.target.closest("#theme-toggle")) {
      store.set("theme", store.get("theme", "dark") === "light" ? "dark" : "light");
      paintSettings();
      document.dispatchEvent(new CustomEvent("themechange"));
    } else if (ev.target.closest("#sound-toggle")) {
      store.set("sound", !store.get("sound", false));
      paintSettings();
    }
  });

  // -- a small websocket client for lists that follow several markets (tickers, halts) -------------------
  /** Subscribe `channels` of each market; `on(kind, body)` gets every frame. Reconnects with a back-off. */
  function follow(markets, channels, on) {
    const path = document.body.dataset.websocket;
    if (!path || !window.WebSocket) return null;
    let tries = 0, ws = null;
    const open = () => {
      ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path);
      ws.onopen = () => {
        tries = 0;
        for (const market of markets) ws.send(JSON.stringify({ subscribe: { market, channels } }));
      };
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        const kind = Object.keys(msg)[0];
        if (kind) on(kind, msg[kind]);
      };
      ws.onclose = () => { if (++tries < 8) setTimeout(open, 1000 * tries); };
    };
    open();
    return { send: (obj) => ws && ws.readyState === 1 && ws.send(JSON.stringify(obj)) };
  }

  /** A market's row (home list, pair menu): its halt tag and reason from a status frame. */
  function paintStatus(row, st) {
    row.classList.toggle("halted", !!st.halted);
    const tag = row.querySelector('[data-k="halted"]');
    if (tag) { tag.hidden = !st.halted; tag.title = st.reason || ""; }
    const reason = row.querySelector('[data-k="reason"]');
    if (reason) { reason.hidden = !(st.halted && st.reason); reason.textContent = st.halted ? st.reason || "" : ""; }
  }

  /** 24 h change of a ticker frame, as "+1.23%", or null. */
  function changeOf(x) {
    const o = parseFloat(x.open), l = parseFloat(x.last);
    if (!(o > 0) || !(l > 0)) return null;
    return (l - o) / o * 100;
  }
  function fixed(s, n) {
    const [w, f = ""] = String(s).split(".");
    return n > 0 ? `${w}.${(f + "0".repeat(n)).slice(0, n)}` : w;
  }
  function paintTicker(row, x) {
    const pp = Number(row.dataset.pp);
    const last = row.querySelector('[data-k="last"]');
    if (last && parseFloat(x.last) > 0) last.textContent = fixed(x.last, pp);
    const cell = row.querySelector('[data-k="change"]');
    const ch = changeOf(x);
    if (cell && ch !== null) {
      cell.textContent = (ch >= 0 ? "+" : "") + ch.toFixed(2) + "%";
      cell.classList.toggle("up", ch > 0);
      cell.classList.toggle("down", ch < 0);
    }
  }

  // -- the member's own stream: notices (credited deposits, withdrawal states, identity decisions) as
  // toasts, and the order/trade/account frames the market page listens to. It rides on the page's log in
  // (the session cookie; the server checks the Origin); while the socket is down, notices are polled.
  const memberFeed = (() => {
    const path = document.body.dataset.ws;
    if (!document.body.dataset.member) return null;
    const listeners = [];
    const channels = new Set(["notice"]);
    const shown = new Set();
    let ws = null, tries = 0, last = null, timer = null;
    const feed = { up: false, on: (fn) => listeners.push(fn), want };
    const emit = (kind, body) => { for (const fn of listeners) fn(kind, body); };
    function notice(n) {
      if (shown.has(n.id)) return;
      shown.add(n.id);
      if (last === null || n.id > last) last = n.id;
      toast(n.text, /rejected|failed|canceled/.test(n.state) ? "bad" : "ok");
      document.dispatchEvent(new CustomEvent("notice", { detail: n }));
    }
    const poll = async () => {
      let r;
      try { r = await getJSON(last === null ? "/notices.json" : `/notices.json?after=${last}`); } catch (e) { return; }
      for (const n of r.notices) notice(n);
      if (last === null || r.last > last) last = r.last;
    };
    function setUp(up) {
      feed.up = up;
      document.body.dataset.memberFeed = up ? "socket" : "poll";
      if (up && timer !== null) { clearInterval(timer); timer = null; }
      if (!up && timer === null) { poll(); timer = setInterval(poll, 5000); }
      emit(up ? "up" : "down", null);
    }
    function want(list) {
      for (const ch of list) channels.add(ch);
      if (feed.up) ws.send(JSON.stringify({ subscribe: { channels: list } }));
    }
    function open() {
      try { ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + path); } catch (e) { setUp(false); return; }
      // a socket that opens but never gets as far as its subscription (a proxy that eats frames) counts as down
      setTimeout(() => { if (!feed.up && timer === null) setUp(false); }, 5000);
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        const kind = Object.keys(msg)[0];
        if (kind === "challenge") ws.send(JSON.stringify({ auth: "session" }));
        else if (kind === "success") {
          const sub = { channels: Array.from(channels) };
          if (last !== null) sub.after = last;  // notices since the page's last one, no older
          ws.send(JSON.stringify({ subscribe: sub }));
        }
        else if (kind === "subscribed") { tries = 0; if (!feed.up) setUp(true); }
        else if (kind === "notice") notice(msg.notice);
        else if (kind === "error") console.warn("websocket:", msg.error.message);
        else if (kind) emit(kind, msg[kind]);
      };
      ws.onclose = () => {
        if (feed.up || timer === null) setUp(false);
        if (++tries < 30) setTimeout(open, Math.min(30, tries * 2) * 1000);
      };
    }
    poll();  // the newest notice id: after a socket failure, polling goes on from there
    if (path && window.WebSocket) open(); else setUp(false);
    return feed;
  })();

  /** Country lists carry ISO codes; the browser knows their names in the page's language. */
  function nameRegions() {
    if (!window.Intl || !Intl.DisplayNames) return;
    let names;
    try { names = new Intl.DisplayNames([document.documentElement.lang || "en"], { type: "region" }); } catch (e) { return; }
    for (const sel of document.querySelectorAll("select[data-regions]")) {
      const opts = Array.from(sel.options).filter((o) => o.value);
      for (const o of opts) {
        let name = o.value;
        try { name = names.of(o.value) || o.value; } catch (e) { /* an unknown code keeps its code */ }
        o.textContent = name === o.value ? name : `${name} (${o.value})`;
      }
      opts.sort((a, b) => a.textContent.localeCompare(b.textContent));
      for (const o of opts) sel.appendChild(o);
    }
  }

  nameRegions();
  localizeTimes();
  paintFavourites();
  paintSettings();
  window.Exchange = { t, localTime, localizeTimes, postForm, getJSON, toast, follow, favourites, filterMarkets,
                      paintStatus, paintTicker, changeOf, fixed, store, memberFeed };
})();
