// iterjob dashboard: live updates over server-sent events.
// Values from the server are only ever written with textContent or as attribute
// values, never parsed as HTML.
"use strict";

(function () {
  const base = document.body.dataset.base || "";
  const status = document.getElementById("live-status");
  const setStatus = (text, cls) => {
    if (!status) return;
    status.textContent = text;
    status.className = "live-status " + cls;
  };

  // the theme switch: the system's theme, dark, light, in turn; remembered
  const themeButton = document.getElementById("theme");
  if (themeButton) {
    const order = ["auto", "dark", "light"];
    const show = () => {
      const theme = document.documentElement.dataset.theme || "auto";
      themeButton.textContent = "◐ " + theme;
      themeButton.setAttribute("aria-label", "theme: " + theme + " (switch)");
    };
    show();
    themeButton.addEventListener("click", () => {
      const now = document.documentElement.dataset.theme || "auto";
      const next = order[(order.indexOf(now) + 1) % order.length];
      if (next === "auto") delete document.documentElement.dataset.theme;
      else document.documentElement.dataset.theme = next;
      try {
        if (next === "auto") window.localStorage.removeItem("iterjob-theme");
        else window.localStorage.setItem("iterjob-theme", next);
      } catch (e) {
        // not remembered; still switched for this page
      }
      show();
    });
  }

  // deleting cannot be undone: ask first
  document.querySelectorAll('form[data-action="delete"]').forEach((form) => {
    form.addEventListener("submit", (event) => {
      const question = "Delete job " + form.dataset.jobAction + " and its history? This cannot be undone.";
      if (!window.confirm(question)) event.preventDefault();
    });
  });

  const ids = new Set();
  document.querySelectorAll("[data-job],[data-job-state],[data-job-action]").forEach((el) => {
    const id = el.dataset.job || el.dataset.jobState || el.dataset.jobAction;
    if (/^\d+$/.test(id)) ids.add(id);
  });
  const wantsCounts = document.querySelector("[data-count]") !== null;
  const wantsRate = document.getElementById("items-per-sec") !== null;
  const workersTable = document.getElementById("workers");
  if (ids.size === 0 && !wantsCounts && !wantsRate && !workersTable) {
    setStatus("", "idle");
    return;
  }

  const applyJob = (v) => {
    document.querySelectorAll('[data-job="' + v.id + '"]').forEach((box) => {
      // the bar's colour follows the state (red failed, grey cancelled)
      if (box.dataset.state !== undefined) box.dataset.state = v.state;
      const bar = box.querySelector("progress");
      if (bar) {
        if (v.items_total > 0) {
          bar.max = v.items_total;
          bar.value = Math.min(v.items_done, v.items_total);
        } else if (v.state === "completed") {
          bar.max = 1;
          bar.value = 1;
        } else {
          bar.removeAttribute("value");
        }
      }
      const set = (sel, text) => {
        const el = box.querySelector(sel);
        if (el) el.textContent = text;
      };
      set(".items", v.items_text);
      set(".rate", v.rate_text);
      set(".eta", v.eta_text);
    });
    document.querySelectorAll('[data-job-state="' + v.id + '"]').forEach((el) => {
      el.textContent = v.state_text;
      el.className = "state state-" + v.state;
    });
    const can = { pause: v.can_pause, resume: v.can_resume, cancel: v.can_cancel, retry: v.can_retry, delete: v.can_delete };
    document.querySelectorAll('[data-job-action="' + v.id + '"]').forEach((form) => {
      form.hidden = !can[form.dataset.action];
    });
  };

  const spark = [];
  const drawSpark = (perSec) => {
    const line = document.getElementById("spark-line");
    if (!line) return;
    spark.push(perSec);
    while (spark.length > 120) spark.shift();
    const max = Math.max(1, ...spark);
    const points = spark.map((v, i) => {
      const x = (120 - spark.length + i).toFixed(1);
      const y = (29 - (v / max) * 28).toFixed(1);
      return x + "," + y;
    });
    line.setAttribute("points", points.join(" "));
  };

  const url = base + "/live?ids=" + Array.from(ids).join(",") + (wantsCounts ? "&counts=1" : "") +
    (workersTable ? "&workers=1" : "");
  const source = new EventSource(url);
  // Browsers allow about six connections per host over HTTP/1.1: close the stream
  // when the page goes away (or into the back-forward cache), so it frees its slot.
  window.addEventListener("pagehide", () => source.close());
  source.addEventListener("open", () => setStatus("● live", "on"));
  source.addEventListener("error", () => setStatus("○ reconnecting", "off"));
  source.addEventListener("jobs", (e) => {
    JSON.parse(e.data).forEach(applyJob);
  });
  source.addEventListener("rate", (e) => {
    const r = JSON.parse(e.data);
    const el = document.getElementById("items-per-sec");
    if (el) el.textContent = r.text;
    drawSpark(r.per_sec);
  });
  // the workers list, rebuilt from the server's rows (text only)
  source.addEventListener("workers", (e) => {
    if (!workersTable) return;
    const rows = JSON.parse(e.data);
    const body = workersTable.querySelector("tbody");
    const cells = [
      ["Worker", "id"], ["Host", "host"], ["Queues", "queues"], ["Slots in use", "slots"],
      ["Last heartbeat", "beat"], ["Started", "started"],
    ];
    body.replaceChildren(...rows.map((w) => {
      const tr = document.createElement("tr");
      if (w.silent) tr.className = "silent";
      cells.forEach(([label, key]) => {
        const td = document.createElement("td");
        td.dataset.label = label;
        if (key === "id") {
          const code = document.createElement("code");
          code.textContent = w.id;
          td.appendChild(code);
        } else {
          td.textContent = w[key];
        }
        if (key === "beat" && w.silent) {
          const badge = document.createElement("span");
          badge.className = "state state-failed";
          badge.textContent = "silent";
          td.append(" ", badge);
        }
        tr.appendChild(td);
      });
      return tr;
    }));
    workersTable.hidden = rows.length === 0;
    const none = document.getElementById("workers-none");
    if (none) none.hidden = rows.length > 0;
  });
  source.addEventListener("counts", (e) => {
    const counts = JSON.parse(e.data);
    document.querySelectorAll("[data-count]").forEach((el) => {
      const n = counts[el.dataset.count];
      if (n !== undefined) el.textContent = n;
    });
  });
})();
