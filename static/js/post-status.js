// A post's page (/posts/<id>): each account's state follows the queue without a reload. Polls the
// page's status (GET /posts/<id>/status, the same rows the page was rendered from) every 2 s while
// any account is queued or publishing, then stops. A static file: the CSP allows no inline script.
"use strict";

(() => {
  const list = document.getElementById("outcomes");
  if (!list) return;
  const retry = document.getElementById("retry-form");
  const POLL_MS = 2000;

  const show = (node, value, apply) => {
    node.hidden = !value;
    if (value) apply(value);
    else node.removeAttribute("href");
  };

  const render = (state) => {
    for (const target of state.targets) {
      const row = list.querySelector(`[data-platform="${CSS.escape(target.platform)}"]`);
      if (!row) continue;
      const chip = row.querySelector("[data-status]");
      if (chip.textContent !== target.statusText) {
        chip.textContent = target.statusText;
        chip.className = `chip chip-${target.status}`;
      }
      show(row.querySelector("[data-link]"), target.url, (url) => row.querySelector("[data-link]").setAttribute("href", url));
      show(row.querySelector("[data-error]"), target.error, (text) => { row.querySelector("[data-error]").textContent = text; });
      show(row.querySelector("[data-reconnect]"), target.reconnect, (url) => row.querySelector("[data-reconnect]").setAttribute("href", url));
      row.querySelector("[data-mark]").hidden = target.status !== "needs_attention";  // the user's answer
    }
    retry.hidden = !state.retryable;
  };

  const poll = async () => {
    try {
      const reply = await fetch(list.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (reply.ok) {
        const state = await reply.json();
        render(state);
        if (!state.active) return;
      }
    } catch (error) {
      // The server may be restarting: keep trying at the same pace.
    }
    setTimeout(poll, POLL_MS);
  };

  if (list.hasAttribute("data-active")) setTimeout(poll, POLL_MS);
})();
