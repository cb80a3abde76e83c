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

  localizeTimes();
  window.Exchange = { t, localTime, localizeTimes, postForm, getJSON };
})();
